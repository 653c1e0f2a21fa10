// When each request is sent, as offsets in seconds from the start of the run.
// vLLM's arrival process: gamma-distributed inter-arrival times with shape
// `burstiness` and mean 1/rate (burstiness 1 is a Poisson process), an
// infinite rate sends everything at once, a linear ramp moves the rate from
// a start to an end value over the requests, and a trace replays recorded
// timestamps.
#pragma once

#include <optional>
#include <random>
#include <vector>

namespace tidal::bench {

class GammaInterarrival {
 public:
  // rate > 0 (requests/s, finite), burstiness > 0 (infinite: constant gaps).
  GammaInterarrival(double rate, double burstiness);
  double sample(std::mt19937_64& rng);
  double mean() const;      // 1 / rate
  double variance() const;  // 1 / (rate^2 * burstiness)

 private:
  double rate_;
  double burstiness_;
  std::gamma_distribution<double> gamma_;
};

struct LinearRamp {
  double start_rps = 0;
  double end_rps = 0;
};

struct ArrivalOptions {
  double request_rate = 0;  // requests/s; infinity: all at once
  double burstiness = 1.0;
  std::optional<LinearRamp> ramp;  // replaces request_rate
};

// Offsets for `n` requests. Without a ramp, the gaps are rescaled so the
// last request goes out at exactly n / rate, as vLLM does, so that runs with
// different seeds offer the same load.
std::vector<double> arrival_offsets(size_t n, const ArrivalOptions& o, std::mt19937_64& rng);

// A recorded trace: offsets from the first timestamp, divided by `speedup`.
std::vector<double> trace_offsets(const std::vector<double>& timestamps_s, double speedup);

}  // namespace tidal::bench
