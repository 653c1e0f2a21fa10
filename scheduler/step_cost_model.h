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
  // True once the steps seen so far have differed enough in size to
  // separate a from b. It stays true: when later steps are all one size (a
  // long run of decodes), their sizes no longer tell a from b, and the last
  // fit they could still make is kept rather than dropped.
  bool ready() const { return have_fit_; }
  double predict_seconds(int n_tokens) const;
  double intercept() const { return a_; }  // a, seconds per step
  double slope() const { return b_; }      // b, seconds per token
  // The largest token count whose predicted step fits in `seconds`; at least 1.
  int max_tokens_within(double seconds) const;

 private:
  bool sizes_vary() const;
  void fit(double* a, double* b) const;

  double decay_;
  double w_ = 0, wn_ = 0, wnn_ = 0, wt_ = 0, wnt_ = 0;  // decayed sums of 1, n, n², t, n·t
  bool have_fit_ = false;
  double a_ = 0, b_ = 0;  // the latest fit made while sizes varied
};

}  // namespace tidal
