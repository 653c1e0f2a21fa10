// Clopper-Pearson bounds against reference values and their defining
// properties; the sequential agreement test's error rates and speed by
// seeded simulation, and its latch-and-restart behaviour.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>

#include "reconfig/agreement_stats.h"

namespace tidal {
namespace {

TEST(AgreementStatsClopperPearson, MatchesReferenceValues) {
  // From scipy.stats.beta.ppf(1 - c, s, n - s + 1) and beta.ppf(c, s + 1, n - s).
  struct Case {
    int64_t s, n;
    double confidence, lower, upper;
  };
  const Case cases[] = {
      {0, 10, 0.95, 0, 0.25886555089305219},
      {10, 10, 0.95, 0.74113444910694781, 1},
      {1, 1, 0.95, 0.050000000000000044, 1},
      {0, 1, 0.95, 0, 0.94999999999999996},
      {7, 10, 0.95, 0.39337578389458772, 0.9127355660858496},
      {1, 20, 0.99, 0.00050239055225847421, 0.28879036799301983},
      {50, 100, 0.9, 0.43141682559378081, 0.56858317440621919},
      {999, 1000, 0.999, 0.99080450236461237, 0.99999899950016691},
      {9000, 10000, 0.95, 0.89492888341276977, 0.90489798654241593},
      {9990, 10000, 0.95, 0.99830436854635463, 0.99945736242470906},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.s) + "/" + std::to_string(c.n) + " at " + std::to_string(c.confidence));
    EXPECT_NEAR(clopper_pearson_lower(c.s, c.n, c.confidence), c.lower, 1e-9);
    EXPECT_NEAR(clopper_pearson_upper(c.s, c.n, c.confidence), c.upper, 1e-9);
  }
  EXPECT_EQ(clopper_pearson_lower(0, 0, 0.95), 0);
  EXPECT_EQ(clopper_pearson_upper(0, 0, 0.95), 1);
}

TEST(AgreementStatsClopperPearson, AllOrNoSuccessesHaveClosedForms) {
  // P(X >= n | n, p) = p^n, so the lower bound solves p^n = 1 - confidence.
  for (int64_t n : {1, 2, 5, 37, 1000, 10000}) {
    for (double confidence : {0.5, 0.9, 0.95, 0.999}) {
      const double closed = std::pow(1 - confidence, 1.0 / static_cast<double>(n));
      EXPECT_NEAR(clopper_pearson_lower(n, n, confidence), closed, 1e-12) << n << " " << confidence;
      EXPECT_NEAR(clopper_pearson_upper(0, n, confidence), 1 - closed, 1e-12) << n << " " << confidence;
    }
  }
}

TEST(AgreementStatsClopperPearson, BoundsBracketTheObservedRateAndWidenWithConfidence) {
  for (int64_t n : {1, 2, 3, 10, 57, 1000}) {
    const int64_t stride = n > 100 ? 37 : 1;
    for (int64_t s = 0; s <= n; s += stride) {
      const double rate = static_cast<double>(s) / static_cast<double>(n);
      double prev_lower = 2, prev_upper = -1;
      for (double confidence : {0.5, 0.9, 0.99}) {
        const double lower = clopper_pearson_lower(s, n, confidence);
        const double upper = clopper_pearson_upper(s, n, confidence);
        EXPECT_LE(lower, rate) << s << "/" << n << " at " << confidence;
        EXPECT_GE(upper, rate) << s << "/" << n << " at " << confidence;
        EXPECT_LE(lower, prev_lower) << s << "/" << n << " at " << confidence;
        EXPECT_GE(upper, prev_upper) << s << "/" << n << " at " << confidence;
        if (s > 0) {
          EXPECT_LT(lower, rate) << s << "/" << n << " at " << confidence;
        }
        if (s < n) {
          EXPECT_GT(upper, rate) << s << "/" << n << " at " << confidence;
        }
        prev_lower = lower;
        prev_upper = upper;
      }
    }
  }
}

TEST(AgreementStatsClopperPearson, CoversTheTrueRateAtLeastAtTheConfidence) {
  // Exactness: for every p, P(lower(X) > p) <= 1 - confidence, summed over
  // the binomial distribution of X. An approximate (e.g. Wald) bound fails this.
  constexpr int64_t n = 40;
  const double confidence = 0.9;
  double lower[n + 1];
  for (int64_t s = 0; s <= n; ++s) lower[s] = clopper_pearson_lower(s, n, confidence);
  double worst = 0;
  for (double p = 0.005; p < 1; p += 0.005) {
    double miss = 0;
    for (int64_t s = 0; s <= n; ++s) {
      if (lower[s] <= p) continue;
      miss += std::exp(std::lgamma(n + 1.0) - std::lgamma(s + 1.0) - std::lgamma(n - s + 1.0) +
                       static_cast<double>(s) * std::log(p) + static_cast<double>(n - s) * std::log1p(-p));
    }
    EXPECT_LE(miss, 1 - confidence + 1e-12) << "p " << p;
    worst = std::max(worst, miss);
  }
  EXPECT_GT(worst, 0.8 * (1 - confidence));  // and it is not so loose as to be useless
}

TEST(AgreementStatsClopperPearson, RejectsInvalidArguments) {
  EXPECT_THROW(clopper_pearson_lower(5, 4, 0.95), std::invalid_argument);
  EXPECT_THROW(clopper_pearson_upper(5, 4, 0.95), std::invalid_argument);
  EXPECT_THROW(clopper_pearson_lower(-1, 4, 0.95), std::invalid_argument);
  EXPECT_THROW(clopper_pearson_upper(0, -1, 0.95), std::invalid_argument);
  for (double confidence : {0.0, 1.0, -0.5, 1.5, std::nan("")}) {
    EXPECT_THROW(clopper_pearson_lower(3, 4, confidence), std::invalid_argument) << confidence;
    EXPECT_THROW(clopper_pearson_upper(3, 4, confidence), std::invalid_argument) << confidence;
  }
}

TEST(AgreementStats, VerdictNames) {
  EXPECT_STREQ(accuracy_verdict_name(AccuracyVerdict::kUnknown), "unknown");
  EXPECT_STREQ(accuracy_verdict_name(AccuracyVerdict::kMeets), "meets");
  EXPECT_STREQ(accuracy_verdict_name(AccuracyVerdict::kFails), "fails");
}

struct SimulationResult {
  double meets_fraction = 0;  // of the finished tests
  double mean_trials = 0;     // per finished test
};

// Runs `tests` sequential tests back to back on one SequentialAgreementTest
// (which restarts itself after each verdict) with agreement probability p.
SimulationResult simulate(SequentialAgreementTest test, double p, int tests, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution agrees(p);
  int64_t meets = 0, trials = 0;
  while (test.tests_finished() < tests) {
    const int64_t finished = test.tests_finished();
    test.add(agrees(rng));
    ++trials;
    if (test.tests_finished() != finished && test.verdict() == AccuracyVerdict::kMeets) ++meets;
  }
  return {static_cast<double>(meets) / tests, static_cast<double>(trials) / tests};
}

// 2000 tests give a standard error of about 0.005 on a rate near 0.05; the
// tolerance is three of those. Wald's boundaries ignore the overshoot past
// them, which makes the real error rates a little lower than nominal.
constexpr int kTests = 2000;
constexpr double kRateTolerance = 0.015;

TEST(AgreementStatsSequential, DeclaresMeetsAtTheObjectiveAtMostAlphaOfTheTime) {
  const SimulationResult r = simulate(SequentialAgreementTest(0.9, 0.95), 0.9, kTests, 1);
  EXPECT_LE(r.meets_fraction, 0.05 + kRateTolerance);
  EXPECT_GT(r.meets_fraction, 0.02);  // near alpha, not trivially conservative (measured 0.044)
}

TEST(AgreementStatsSequential, DeclaresFailsAtPGoodAtMostBetaOfTheTime) {
  const SimulationResult r = simulate(SequentialAgreementTest(0.9, 0.95), 0.92, kTests, 2);
  EXPECT_LE(1 - r.meets_fraction, 0.05 + kRateTolerance);
  EXPECT_GT(1 - r.meets_fraction, 0.02);
}

TEST(AgreementStatsSequential, KeepsSeparateAlphaAndBeta) {
  // alpha 0.01, beta 0.10, margin 0.03: a swap of the two would show.
  const SequentialAgreementTest test(0.8, 0.99, 0.03, 0.10);
  const SimulationResult at_objective = simulate(test, 0.8, kTests, 3);
  EXPECT_LE(at_objective.meets_fraction, 0.01 + 0.007);
  const SimulationResult at_good = simulate(test, 0.83, kTests, 4);
  EXPECT_LE(1 - at_good.meets_fraction, 0.10 + 0.02);
  EXPECT_GT(1 - at_good.meets_fraction, 0.05);
}

TEST(AgreementStatsSequential, ConcludesMeetsQuicklyWellAboveTheObjective) {
  // Wald's approximation of the mean sample number, (1-beta) A / E[step], is about 190 here; measured 201.
  const SimulationResult r = simulate(SequentialAgreementTest(0.9, 0.95), 0.97, kTests, 5);
  EXPECT_EQ(r.meets_fraction, 1.0);
  EXPECT_LT(r.mean_trials, 230);
}

TEST(AgreementStatsSequential, ConcludesFailsQuicklyWellBelowTheObjective) {
  // Wald's approximation is about 105 here; measured 113.
  const SimulationResult r = simulate(SequentialAgreementTest(0.9, 0.95), 0.8, kTests, 6);
  EXPECT_EQ(r.meets_fraction, 0.0);
  EXPECT_LT(r.mean_trials, 135);
}

TEST(AgreementStatsSequential, DefaultMarginAndStepSizes) {
  const SequentialAgreementTest t(0.9, 0.95);
  EXPECT_DOUBLE_EQ(t.objective(), 0.9);
  EXPECT_DOUBLE_EQ(t.p_good(), 0.92);
  EXPECT_DOUBLE_EQ(SequentialAgreementTest(0.99, 0.95).p_good(), 0.995);  // half the headroom
  EXPECT_DOUBLE_EQ(SequentialAgreementTest(0.9, 0.95, 0.05).p_good(), 0.95);

  SequentialAgreementTest u(0.9, 0.95);
  u.add(true);
  u.add(false);
  u.add(true);
  EXPECT_EQ(u.trials(), 3);
  EXPECT_EQ(u.successes(), 2);
  EXPECT_NEAR(u.log_likelihood_ratio(), 2 * std::log(0.92 / 0.9) + std::log(0.08 / 0.1), 1e-12);
}

TEST(AgreementStatsSequential, CrossesTheBoundariesAfterTheExactNumberOfTrials) {
  // A = log(19) over a step of log(0.92 / 0.9) is 133.97: 134 agreements in a row.
  SequentialAgreementTest t(0.9, 0.95);
  for (int i = 0; i < 133; ++i) t.add(true);
  EXPECT_EQ(t.verdict(), AccuracyVerdict::kUnknown);
  EXPECT_EQ(t.trials(), 133);
  t.add(true);
  EXPECT_EQ(t.verdict(), AccuracyVerdict::kMeets);
  EXPECT_EQ(t.tests_finished(), 1);

  // B = -log(19) over a step of log(0.08 / 0.1) is 13.2: 14 disagreements in a row.
  SequentialAgreementTest f(0.9, 0.95);
  for (int i = 0; i < 13; ++i) f.add(false);
  EXPECT_EQ(f.verdict(), AccuracyVerdict::kUnknown);
  f.add(false);
  EXPECT_EQ(f.verdict(), AccuracyVerdict::kFails);
}

TEST(AgreementStatsSequential, LatchesTheVerdictAndRestartsFromZero) {
  SequentialAgreementTest t(0.9, 0.95);
  for (int i = 0; i < 134; ++i) t.add(true);
  ASSERT_EQ(t.verdict(), AccuracyVerdict::kMeets);
  EXPECT_EQ(t.trials(), 0);
  EXPECT_EQ(t.successes(), 0);
  EXPECT_EQ(t.log_likelihood_ratio(), 0);

  // The running test leans towards fails, but the latched verdict stands until it finishes.
  for (int i = 0; i < 13; ++i) t.add(false);
  EXPECT_EQ(t.verdict(), AccuracyVerdict::kMeets);
  EXPECT_EQ(t.trials(), 13);
  EXPECT_EQ(t.successes(), 0);
  EXPECT_EQ(t.tests_finished(), 1);
  t.add(false);  // the workload drifted: the next test flips the verdict
  EXPECT_EQ(t.verdict(), AccuracyVerdict::kFails);
  EXPECT_EQ(t.tests_finished(), 2);
  EXPECT_EQ(t.trials(), 0);

  for (int i = 0; i < 134; ++i) t.add(true);
  EXPECT_EQ(t.verdict(), AccuracyVerdict::kMeets);
  EXPECT_EQ(t.tests_finished(), 3);
}

TEST(AgreementStatsSequential, RejectsInvalidArguments) {
  for (double objective : {0.0, 1.0, -0.1, 1.1, std::nan("")})
    EXPECT_THROW(SequentialAgreementTest(objective, 0.95), std::invalid_argument) << objective;
  for (double confidence : {0.0, 1.0, 1.5, std::nan("")})
    EXPECT_THROW(SequentialAgreementTest(0.9, confidence), std::invalid_argument) << confidence;
  for (double margin : {0.0, -0.01, 0.1, 0.2, std::nan("")})  // 0.9 + 0.1 reaches 1
    EXPECT_THROW(SequentialAgreementTest(0.9, 0.95, margin), std::invalid_argument) << margin;
  for (double beta : {0.0, 1.0, -0.2, std::nan("")})
    EXPECT_THROW(SequentialAgreementTest(0.9, 0.95, std::nullopt, beta), std::invalid_argument) << beta;
  // alpha + beta >= 1 would put the fails boundary above the meets boundary.
  EXPECT_THROW(SequentialAgreementTest(0.9, 0.5, std::nullopt, 0.5), std::invalid_argument);
  EXPECT_NO_THROW(SequentialAgreementTest(0.9, 0.5, std::nullopt, 0.4));
}

}  // namespace
}  // namespace tidal
