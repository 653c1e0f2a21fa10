// Statistics for deciding whether a cheaper variant agrees with the base
// model often enough. The reconfigurator replays sampled real requests on a
// variant; each one is an independent Bernoulli trial that agrees with the
// base or not. Two views of the same trials:
//  - exact Clopper-Pearson bounds on the agreement probability (what to
//    report), and
//  - Wald's sequential probability ratio test (what to act on): it may be
//    consulted after every trial without inflating its error rates, which a
//    repeatedly checked confidence bound would.
#pragma once

#include <cstdint>
#include <optional>

namespace tidal {

// Exact one-sided Clopper-Pearson bounds on a binomial proportion at
// `confidence` (e.g. 0.95):
// lower = the p with P(X >= successes | trials, p) = 1 - confidence (0 when successes == 0),
// upper = the p with P(X <= successes | trials, p) = 1 - confidence (1 when successes == trials).
// trials == 0: lower 0, upper 1. Throws std::invalid_argument on successes > trials,
// negative counts, confidence outside (0, 1).
double clopper_pearson_lower(int64_t successes, int64_t trials, double confidence);
double clopper_pearson_upper(int64_t successes, int64_t trials, double confidence);

enum class AccuracyVerdict { kUnknown, kMeets, kFails };
const char* accuracy_verdict_name(AccuracyVerdict v);  // "unknown" | "meets" | "fails"

// Wald's sequential probability ratio test of H0: p <= p_bad against
// H1: p >= p_good, where p_bad = objective and p_good = objective + margin
// (margin default: min(0.02, (1 - objective) / 2), so p_good < 1; an explicit
// margin must keep p_good < 1). alpha = 1 - confidence bounds the chance of
// declaring kMeets when the true p <= objective; beta (default = alpha) bounds
// the chance of declaring kFails when p >= p_good. Between the two the test
// may go either way and takes longest.
// Boundaries: A = log((1 - beta) / alpha) (accept H1 -> kMeets),
// B = log(beta / (1 - alpha)) (accept H0 -> kFails); alpha + beta < 1 keeps B < 0 < A.
// Once a boundary is crossed the verdict is latched and a new test starts
// from zero, so monitoring can go on and a later test can flip the verdict
// (e.g. when the workload drifts); verdict() reports the latest finished
// test's result, kUnknown until one finishes.
class SequentialAgreementTest {
 public:
  // Throws std::invalid_argument unless objective, confidence and beta lie in
  // (0, 1), margin > 0, objective + margin < 1 and alpha + beta < 1.
  SequentialAgreementTest(double objective, double confidence, std::optional<double> margin = std::nullopt,
                          std::optional<double> beta = std::nullopt);

  void add(bool agrees);
  AccuracyVerdict verdict() const { return verdict_; }
  int64_t trials() const { return trials_; }  // in the running (unfinished) test
  int64_t successes() const { return successes_; }
  double log_likelihood_ratio() const;        // of the running test
  int64_t tests_finished() const { return tests_finished_; }
  double objective() const { return p_bad_; }
  double p_good() const { return p_good_; }

 private:
  double p_bad_, p_good_;
  double llr_agree_, llr_disagree_;  // log-likelihood-ratio step of one trial
  double accept_meets_, accept_fails_;  // A and B
  int64_t trials_ = 0, successes_ = 0, tests_finished_ = 0;
  AccuracyVerdict verdict_ = AccuracyVerdict::kUnknown;
};

}  // namespace tidal
