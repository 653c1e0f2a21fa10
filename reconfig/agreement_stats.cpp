#include "reconfig/agreement_stats.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tidal {
namespace {

// Continued fraction of the regularized incomplete beta function (DLMF 8.17.22):
//   I_x(a, b) = x^a (1-x)^b / (a B(a, b)) * 1 / (1 + d1 / (1 + d2 / (1 + ...)))
//   d_{2m+1} = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1)),  d_{2m} = m(b-m) x / ((a+2m-1)(a+2m)).
// Evaluated front to back with the modified Lentz method, which needs no
// bound on the depth in advance. It converges fast for x < (a+1)/(a+b+2);
// the caller reflects other x into that range.
double beta_continued_fraction(double x, double a, double b) {
  constexpr double kTiny = 1e-300;  // stands in for a zero denominator
  constexpr double kEps = 1e-16;
  // Depth grows like sqrt(max(a, b)); this bound leaves a wide margin.
  const int64_t max_terms = 1000 + static_cast<int64_t>(10 * std::sqrt(std::max(a, b)));
  auto nonzero = [](double v) { return std::fabs(v) < kTiny ? kTiny : v; };
  double f = 1, c = 1, d = 0;  // the fraction starts from its leading 1
  auto step = [&](double coeff) {
    d = 1 / nonzero(1 + coeff * d);
    c = nonzero(1 + coeff / c);
    const double delta = c * d;
    f *= delta;
    return std::fabs(delta - 1) < kEps;
  };
  for (int64_t m = 0; m < max_terms; ++m) {
    const double odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
    if (step(odd)) return 1 / f;
    const double even = (m + 1) * (b - (m + 1)) * x / ((a + 2 * m + 1) * (a + 2 * m + 2));
    if (step(even)) return 1 / f;
  }
  throw std::runtime_error("incomplete beta: continued fraction did not converge (a=" + std::to_string(a) +
                           ", b=" + std::to_string(b) + ")");
}

// I_x(a, b) for a, b > 0: P(Beta(a, b) <= x).
double regularized_incomplete_beta(double x, double a, double b) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  // In logs: the prefactor under- and overflows on its own for large a, b.
  const double log_front = a * std::log(x) + b * std::log1p(-x) - std::log(a) -
                           (std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b));
  if (x < (a + 1) / (a + b + 2)) return std::exp(log_front) * beta_continued_fraction(x, a, b);
  // I_x(a, b) = 1 - I_{1-x}(b, a), whose prefactor is the same but for dividing by b instead of a.
  return 1 - std::exp(log_front + std::log(a) - std::log(b)) * beta_continued_fraction(1 - x, b, a);
}

// The x with I_x(a, b) = target. I_x is increasing in x, so bisection is safe
// without derivatives; it runs until the bracket cannot be halved in double
// precision, i.e. to full relative precision even for tiny bounds.
double inverse_regularized_incomplete_beta(double target, double a, double b) {
  double lo = 0, hi = 1;
  for (;;) {
    const double mid = lo + (hi - lo) / 2;
    if (mid <= lo || mid >= hi) return mid;
    (regularized_incomplete_beta(mid, a, b) < target ? lo : hi) = mid;
  }
}

void check_counts(int64_t successes, int64_t trials, double confidence) {
  if (successes < 0 || trials < 0 || successes > trials)
    throw std::invalid_argument("clopper_pearson: need 0 <= successes <= trials, got " +
                                std::to_string(successes) + " of " + std::to_string(trials));
  if (!(confidence > 0 && confidence < 1))  // also rejects NaN
    throw std::invalid_argument("clopper_pearson: confidence must lie in (0, 1), got " + std::to_string(confidence));
}

void check_open_unit(const char* what, double v) {
  if (!(v > 0 && v < 1))
    throw std::invalid_argument(std::string("SequentialAgreementTest: ") + what + " must lie in (0, 1), got " +
                                std::to_string(v));
}

}  // namespace

double clopper_pearson_lower(int64_t successes, int64_t trials, double confidence) {
  check_counts(successes, trials, confidence);
  if (successes == 0) return 0;
  // P(X >= s | n, p) = I_p(s, n - s + 1).
  return inverse_regularized_incomplete_beta(1 - confidence, static_cast<double>(successes),
                                             static_cast<double>(trials - successes + 1));
}

double clopper_pearson_upper(int64_t successes, int64_t trials, double confidence) {
  check_counts(successes, trials, confidence);
  if (successes == trials) return 1;
  // An upper bound on the success rate is one minus a lower bound on the failure rate.
  return 1 - clopper_pearson_lower(trials - successes, trials, confidence);
}

const char* accuracy_verdict_name(AccuracyVerdict v) {
  switch (v) {
    case AccuracyVerdict::kMeets: return "meets";
    case AccuracyVerdict::kFails: return "fails";
    case AccuracyVerdict::kUnknown: break;
  }
  return "unknown";
}

SequentialAgreementTest::SequentialAgreementTest(double objective, double confidence, std::optional<double> margin,
                                                 std::optional<double> beta) {
  check_open_unit("objective", objective);
  check_open_unit("confidence", confidence);
  const double alpha = 1 - confidence;
  const double b = beta.value_or(alpha);
  check_open_unit("beta", b);
  if (!(alpha + b < 1))
    throw std::invalid_argument("SequentialAgreementTest: alpha + beta must be below 1, got " +
                                std::to_string(alpha + b));
  // A default margin of 0.02 keeps the test short for typical objectives;
  // halving the headroom keeps p_good below 1 for objectives close to it.
  const double m = margin.value_or(std::min(0.02, (1 - objective) / 2));
  if (!(m > 0 && objective + m < 1))
    throw std::invalid_argument("SequentialAgreementTest: margin must be > 0 with objective + margin < 1, got " +
                                std::to_string(m));
  p_bad_ = objective;
  p_good_ = objective + m;
  llr_agree_ = std::log(p_good_ / p_bad_);
  llr_disagree_ = std::log1p(-p_good_) - std::log1p(-p_bad_);
  accept_meets_ = std::log((1 - b) / alpha);
  accept_fails_ = std::log(b / (1 - alpha));
}

double SequentialAgreementTest::log_likelihood_ratio() const {
  // From the counts rather than a running sum, so long tests accumulate no rounding drift.
  return static_cast<double>(successes_) * llr_agree_ + static_cast<double>(trials_ - successes_) * llr_disagree_;
}

void SequentialAgreementTest::add(bool agrees) {
  ++trials_;
  if (agrees) ++successes_;
  const double llr = log_likelihood_ratio();
  if (llr > accept_fails_ && llr < accept_meets_) return;
  verdict_ = llr >= accept_meets_ ? AccuracyVerdict::kMeets : AccuracyVerdict::kFails;
  ++tests_finished_;
  trials_ = successes_ = 0;
}

}  // namespace tidal
