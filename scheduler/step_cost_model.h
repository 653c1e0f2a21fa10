// Predicts how long an engine step takes from the number of tokens it
// computes, t ≈ a + b·n: a is the per-step cost of streaming the weights and
// synchronising, b the marginal cost of one more token in the batch. Fitted
// online by exponentially weighted least squares over recent steps, so it
// follows the machine (thermal, other tenants) and the model without a
// profiling phase. The scheduler uses it to keep each step, and hence every
// running request's time per output token, under a target.
#pragma once

namespace tidal {

class StepCostModel {
 public:
  // Each observation's weight decays by this factor per later observation:
  // about the last 1 / (1 - decay) steps count.
  explicit StepCostModel(double decay = 0.98) : decay_(decay) {}

  void observe(int n_tokens, double seconds);
  // True once the steps seen so far differ enough in size to separate a from b.
  bool ready() const;
  double predict_seconds(int n_tokens) const;
  // The largest token count whose predicted step fits in `seconds`; at least 1.
  int max_tokens_within(double seconds) const;

 private:
  void fit(double* a, double* b) const;

  double decay_;
  double w_ = 0, wn_ = 0, wnn_ = 0, wt_ = 0, wnt_ = 0;  // decayed sums of 1, n, n², t, n·t
};

}  // namespace tidal
