#include "engine/quality_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tidal {

namespace {

// log(sum_i exp(x_i)), shifted by the maximum so no term overflows.
double log_sum_exp(std::span<const float> x) {
  const double max = *std::max_element(x.begin(), x.end());
  double sum = 0.0;
  for (const float v : x) sum += std::exp(double(v) - max);
  return max + std::log(sum);
}

size_t argmax(std::span<const float> x) { return size_t(std::max_element(x.begin(), x.end()) - x.begin()); }

double mean(double sum, int64_t n) { return n > 0 ? sum / double(n) : std::numeric_limits<double>::quiet_NaN(); }

}  // namespace

PositionScore score_position(std::span<const float> base_logits, std::span<const float> variant_logits,
                             int32_t target) {
  const double base_norm = log_sum_exp(base_logits);
  const double variant_norm = log_sum_exp(variant_logits);
  PositionScore s;
  s.base_nll = base_norm - double(base_logits[size_t(target)]);
  s.variant_nll = variant_norm - double(variant_logits[size_t(target)]);
  s.top1_match = argmax(base_logits) == argmax(variant_logits);
  for (size_t i = 0; i < base_logits.size(); ++i) {
    const double log_p_base = double(base_logits[i]) - base_norm;
    const double log_p_variant = double(variant_logits[i]) - variant_norm;
    s.kl += std::exp(log_p_base) * (log_p_base - log_p_variant);
  }
  return s;
}

void QualityTotals::add(const PositionScore& s) {
  ++positions;
  variant_nll += s.variant_nll;
  base_nll += s.base_nll;
  top1_matches += s.top1_match ? 1 : 0;
  kl += s.kl;
}

double QualityTotals::variant_perplexity() const { return std::exp(mean(variant_nll, positions)); }
double QualityTotals::base_perplexity() const { return std::exp(mean(base_nll, positions)); }
double QualityTotals::top1_agreement() const { return mean(double(top1_matches), positions); }
double QualityTotals::mean_kl() const { return mean(kl, positions); }

}  // namespace tidal
