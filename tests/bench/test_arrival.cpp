// The arrival process: gamma inter-arrival statistics, vLLM's rescaling,
// ramps, traces and repeatability. Seeds are fixed, so nothing is flaky.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>

#include "arrival.h"

using namespace tidal::bench;

namespace {

void check_moments(double rate, double burstiness) {
  GammaInterarrival g(rate, burstiness);
  std::mt19937_64 rng(42);
  const int n = 200000;
  double sum = 0, sq = 0;
  for (int i = 0; i < n; ++i) {
    const double x = g.sample(rng);
    ASSERT_GE(x, 0);
    sum += x;
    sq += x * x;
  }
  const double mean = sum / n;
  const double var = sq / n - mean * mean;
  EXPECT_NEAR(mean, 1.0 / rate, 0.01 / rate) << "rate " << rate << " burstiness " << burstiness;
  EXPECT_NEAR(var, g.variance(), 0.04 * g.variance()) << "rate " << rate << " burstiness " << burstiness;
  EXPECT_DOUBLE_EQ(g.mean(), 1.0 / rate);
  EXPECT_DOUBLE_EQ(g.variance(), 1.0 / (rate * rate * burstiness));
}

}  // namespace

TEST(Arrival, PoissonMeanAndVariance) { check_moments(4.0, 1.0); }
TEST(Arrival, BurstyGammaMeanAndVariance) { check_moments(10.0, 0.25); }
TEST(Arrival, SmoothGammaMeanAndVariance) { check_moments(0.5, 8.0); }

TEST(Arrival, InfiniteBurstinessIsConstant) {
  GammaInterarrival g(5.0, std::numeric_limits<double>::infinity());
  std::mt19937_64 rng(1);
  for (int i = 0; i < 10; ++i) EXPECT_DOUBLE_EQ(g.sample(rng), 0.2);
  EXPECT_EQ(g.variance(), 0.0);
}

TEST(Arrival, RejectsBadParameters) {
  EXPECT_THROW(GammaInterarrival(0.0, 1.0), std::invalid_argument);
  EXPECT_THROW(GammaInterarrival(std::numeric_limits<double>::infinity(), 1.0), std::invalid_argument);
  EXPECT_THROW(GammaInterarrival(1.0, 0.0), std::invalid_argument);
}

TEST(Arrival, InfiniteRateSendsEverythingAtOnce) {
  std::mt19937_64 rng(0);
  ArrivalOptions o;
  o.request_rate = std::numeric_limits<double>::infinity();
  for (double t : arrival_offsets(50, o, rng)) EXPECT_EQ(t, 0.0);
}

TEST(Arrival, FixedRateIsRescaledToEndAtNOverRate) {
  std::mt19937_64 rng(7);
  ArrivalOptions o;
  o.request_rate = 8.0;
  const auto t = arrival_offsets(100, o, rng);
  ASSERT_EQ(t.size(), 100u);
  EXPECT_NEAR(t.back(), 100 / 8.0, 1e-9);
  EXPECT_GT(t.front(), 0.0);
  for (size_t i = 1; i < t.size(); ++i) EXPECT_GE(t[i], t[i - 1]);
}

TEST(Arrival, SameSeedSameSchedule) {
  ArrivalOptions o;
  o.request_rate = 3.0;
  o.burstiness = 0.5;
  std::mt19937_64 a(11), b(11), c(12);
  const auto ta = arrival_offsets(20, o, a);
  EXPECT_EQ(ta, arrival_offsets(20, o, b));
  EXPECT_NE(ta, arrival_offsets(20, o, c));
}

TEST(Arrival, LinearRampMovesTheRate) {
  // With constant gaps (infinite burstiness) the ramp is exact:
  // rates 1, 1.5, 2 -> gaps 1, 2/3, 1/2; no rescaling under a ramp.
  std::mt19937_64 rng(0);
  ArrivalOptions o;
  o.burstiness = std::numeric_limits<double>::infinity();
  o.ramp = LinearRamp{1.0, 2.0};
  const auto t = arrival_offsets(3, o, rng);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_NEAR(t[0], 1.0, 1e-12);
  EXPECT_NEAR(t[1], 1.0 + 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(t[2], 1.0 + 2.0 / 3.0 + 0.5, 1e-12);
}

TEST(Arrival, PoissonRampGapsShrink) {
  std::mt19937_64 rng(3);
  ArrivalOptions o;
  o.ramp = LinearRamp{1.0, 50.0};
  const auto t = arrival_offsets(2000, o, rng);
  const double first_half = t[999];
  const double second_half = t[1999] - t[999];
  EXPECT_GT(first_half, 2 * second_half);
}

TEST(Arrival, TraceReplay) {
  const auto t = trace_offsets({100.0, 100.5, 103.0}, 2.0);
  EXPECT_EQ(t, (std::vector<double>{0.0, 0.25, 1.5}));
  EXPECT_THROW(trace_offsets({1.0}, 0.0), std::invalid_argument);
}
