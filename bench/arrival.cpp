#include "arrival.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace tidal::bench {

GammaInterarrival::GammaInterarrival(double rate, double burstiness)
    : rate_(rate),
      burstiness_(burstiness),
      gamma_(std::isinf(burstiness) ? 1.0 : burstiness, std::isinf(burstiness) ? 1.0 : 1.0 / (rate * burstiness)) {
  if (!(rate > 0) || std::isinf(rate)) throw std::invalid_argument("request rate must be positive and finite");
  if (!(burstiness > 0)) throw std::invalid_argument("burstiness must be positive");
}

double GammaInterarrival::sample(std::mt19937_64& rng) {
  // As burstiness grows the gamma narrows to its mean: constant gaps.
  if (std::isinf(burstiness_)) return 1.0 / rate_;
  return gamma_(rng);
}

double GammaInterarrival::mean() const { return 1.0 / rate_; }
double GammaInterarrival::variance() const {
  return std::isinf(burstiness_) ? 0.0 : 1.0 / (rate_ * rate_ * burstiness_);
}

std::vector<double> arrival_offsets(size_t n, const ArrivalOptions& o, std::mt19937_64& rng) {
  std::vector<double> offsets(n, 0.0);
  if (n == 0) return offsets;
  std::optional<GammaInterarrival> fixed_rate;
  if (!o.ramp && !std::isinf(o.request_rate)) fixed_rate.emplace(o.request_rate, o.burstiness);
  // As in vLLM, a gap is drawn before the first request too.
  double t = 0;
  for (size_t i = 0; i < n; ++i) {
    if (fixed_rate) {
      t += fixed_rate->sample(rng);
    } else if (o.ramp) {
      const double progress = static_cast<double>(i) / static_cast<double>(std::max<size_t>(n - 1, 1));
      const double rate = o.ramp->start_rps + (o.ramp->end_rps - o.ramp->start_rps) * progress;
      t += GammaInterarrival(rate, o.burstiness).sample(rng);
    }
    offsets[i] = t;
  }
  if (fixed_rate && offsets.back() > 0) {
    const double scale = (static_cast<double>(n) / o.request_rate) / offsets.back();
    for (double& x : offsets) x *= scale;
  }
  return offsets;
}

std::vector<double> trace_offsets(const std::vector<double>& timestamps_s, double speedup) {
  if (!(speedup > 0)) throw std::invalid_argument("trace speedup must be positive");
  std::vector<double> offsets;
  offsets.reserve(timestamps_s.size());
  for (double ts : timestamps_s) offsets.push_back(std::max(0.0, (ts - timestamps_s.front()) / speedup));
  return offsets;
}

}  // namespace tidal::bench
