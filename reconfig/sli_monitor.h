// Sliding windows of one served model's service level indicators, fed by
// its serving loop (a RequestObserver on its AsyncEngine): arrivals,
// admissions, steps and finished requests, each stamped with the
// configuration that served it. A window answers arrival rate, queue,
// running sequences, KV usage, TTFT/TPOT/end-to-end percentiles and goodput
// (requests that met every latency objective, per second), over every
// configuration or one. It also keeps a live step-time fit per
// configuration (t = a + b * tokens), which refines the reconfigurator's
// performance model, and picks the requests shadow monitoring scores.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>

#include "engine/request_observer.h"
#include "reconfig/slo.h"
#include "scheduler/step_cost_model.h"

namespace tidal {

struct SliWindow {
  double seconds = 0;            // the span the rates are over
  int64_t arrivals = 0;          // submitted, admitted or not
  int64_t rejected = 0;          // not admitted (queue full or shutting down)
  int64_t completed = 0;         // finished, aborted ones included
  int64_t aborted = 0;
  int64_t good = 0;              // finished unaborted within every latency objective
  double arrival_rps = 0, goodput_rps = 0;
  double mean_prompt_tokens = 0, mean_output_tokens = 0;  // of completed requests
  double waiting = 0, running = 0, kv_usage = 0;          // after the latest step
  double busy_fraction = 0;      // share of the span spent in engine steps
  int64_t steps = 0;
  // Percentile `p` (0..100) of a latency in milliseconds over completed
  // requests; nullopt with none.
  std::optional<double> percentile_ms(LatencyMetric metric, double p) const;
  // Whether a latency objective is violated (needs `min_samples` requests).
  bool violates(const Slo& slo, int64_t min_samples = 5) const;

  std::vector<double> ttft_ms, tpot_ms, e2e_ms;  // of completed requests, unsorted
};

class SliMonitor : public RequestObserver {
 public:
  using Clock = std::chrono::steady_clock;
  // A request kept for shadow scoring, handed over when it finishes.
  using SampleSink = std::function<void(FinishedRequest&&)>;

  // Events older than `horizon` are forgotten; `seed` draws the samples.
  explicit SliMonitor(std::chrono::seconds horizon = std::chrono::seconds(300), uint64_t seed = 0x5eed);

  // The configuration serving from now on (its describe_config text).
  void set_config(const std::string& config);
  std::string config() const;
  // The latency objectives that define goodput.
  void set_slo(const Slo& slo);
  // Each admitted request is kept for `sink` with probability `fraction`.
  void set_sampling(double fraction, SampleSink sink);

  // Over the last `span` (all of it when the monitor is younger), of every
  // configuration, or of `config` alone.
  SliWindow window(std::chrono::seconds span, const std::string& config = "") const;
  // The live fit of `config`'s step time, when its steps varied enough in
  // size to make one (StepCostModel).
  std::optional<std::pair<double, double>> step_fit(const std::string& config) const;
  int64_t steps_seen(const std::string& config) const;

  bool on_arrival(const Request& request, bool admitted) override;
  void on_step(int tokens, double seconds, size_t running, size_t waiting, double kv_usage) override;
  void on_finished(FinishedRequest&& request) override;

 private:
  struct Arrival {
    Clock::time_point at;
    bool admitted;
    std::string config;
  };
  struct Step {
    Clock::time_point at;
    double seconds;
    std::string config;
  };
  struct Done {
    Clock::time_point at;
    double ttft_ms, tpot_ms, e2e_ms;  // < 0: not measured
    int prompt_tokens, output_tokens;
    bool aborted;
    std::string config;
  };
  void forget_old(Clock::time_point now);  // under mutex_

  std::chrono::seconds horizon_;
  Clock::time_point started_ = Clock::now();
  mutable std::mutex mutex_;
  std::string config_;
  Slo slo_;
  double fraction_ = 0;
  SampleSink sample_sink_;
  std::mt19937_64 rng_;
  std::deque<Arrival> arrivals_;
  std::deque<Step> steps_;
  std::deque<Done> done_;
  double running_ = 0, waiting_ = 0, kv_usage_ = 0;
  std::map<std::string, StepCostModel> fits_;
  std::map<std::string, int64_t> step_counts_;
};

}  // namespace tidal
