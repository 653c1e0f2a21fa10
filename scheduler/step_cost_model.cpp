#include "scheduler/step_cost_model.h"

#include <algorithm>
#include <cmath>

namespace tidal {

namespace {

// Below this weighted variance of step sizes (in tokens²) the slope is noise.
constexpr double kMinSizeVariance = 0.25;

}  // namespace

void StepCostModel::observe(int n_tokens, double seconds) {
  const double n = n_tokens;
  w_ = decay_ * w_ + 1.0;
  wn_ = decay_ * wn_ + n;
  wnn_ = decay_ * wnn_ + n * n;
  wt_ = decay_ * wt_ + seconds;
  wnt_ = decay_ * wnt_ + n * seconds;
  if (sizes_vary()) {
    fit(&a_, &b_);
    have_fit_ = true;
  }
}

bool StepCostModel::sizes_vary() const {
  return w_ > 0 && (wnn_ / w_ - (wn_ / w_) * (wn_ / w_)) >= kMinSizeVariance;
}

void StepCostModel::fit(double* a, double* b) const {
  const double mean_n = wn_ / w_, mean_t = wt_ / w_;
  const double var_n = wnn_ / w_ - mean_n * mean_n;
  const double cov = wnt_ / w_ - mean_n * mean_t;
  // A step never gets cheaper with more tokens, nor costs less than nothing:
  // clamping keeps a noisy fit from promising free tokens.
  *b = std::max(cov / var_n, 0.0);
  *a = std::max(mean_t - *b * mean_n, 0.0);
}

double StepCostModel::predict_seconds(int n_tokens) const { return a_ + b_ * n_tokens; }

int StepCostModel::max_tokens_within(double seconds) const {
  if (b_ <= 0.0) return 1 << 30;
  const double n = std::floor((seconds - a_) / b_);
  return n < 1.0 ? 1 : n > double(1 << 30) ? (1 << 30) : int(n);
}

}  // namespace tidal
