// The SLI monitor (reconfig/sli_monitor.h) fed by hand as a serving loop
// would feed it: counts, nearest-rank percentiles, goodput against the
// latency objectives, per-configuration windows, violations, the shadow
// sample it keeps, and its live step-time fit. Nothing here depends on how
// fast the test runs: every event lies inside the window.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "reconfig/sli_monitor.h"
#include "scheduler/step_cost_model.h"

namespace tidal {
namespace {

constexpr std::chrono::seconds kSpan(3600);

Request request(int prompt_tokens) {
  Request r;  // the monitor reads nothing of it but the admission
  r.prompt.assign(size_t(prompt_tokens), 7);
  return r;
}

FinishedRequest finished(double ttft, double e2e, int prompt_tokens, int output_tokens, bool aborted = false) {
  FinishedRequest f;
  f.arrival = std::chrono::steady_clock::now() -
              std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(e2e));
  f.ttft_seconds = ttft;
  f.e2e_seconds = e2e;
  f.prompt_tokens = prompt_tokens;
  f.output_tokens = output_tokens;
  f.aborted = aborted;
  return f;
}

TEST(SliMonitor, CountsArrivalsCompletionsAndSteps) {
  SliMonitor monitor;
  for (int i = 0; i < 7; ++i) EXPECT_FALSE(monitor.on_arrival(request(10), /*admitted=*/i < 5));  // no sampling set
  monitor.on_step(16, 0.010, 3, 2, 0.25);
  monitor.on_step(0, 0.001, 4, 1, 0.5);  // an idle step still counts as a step
  monitor.on_finished(finished(0.1, 1.0, 10, 20));
  monitor.on_finished(finished(0.2, 2.0, 30, 40));
  monitor.on_finished(finished(-1, 0.5, 20, 0, /*aborted=*/true));

  const SliWindow w = monitor.window(kSpan);
  EXPECT_EQ(w.arrivals, 7);
  EXPECT_EQ(w.rejected, 2);
  EXPECT_EQ(w.completed, 3);
  EXPECT_EQ(w.aborted, 1);
  EXPECT_EQ(w.steps, 2);
  EXPECT_DOUBLE_EQ(w.mean_prompt_tokens, 20);
  EXPECT_DOUBLE_EQ(w.mean_output_tokens, 20);
  EXPECT_EQ(w.running, 4);  // after the latest step
  EXPECT_EQ(w.waiting, 1);
  EXPECT_EQ(w.kv_usage, 0.5);
  EXPECT_GT(w.seconds, 0);
  EXPECT_DOUBLE_EQ(w.arrival_rps, 7 / w.seconds);
  EXPECT_GE(w.busy_fraction, 0);
  EXPECT_LE(w.busy_fraction, 1);
  EXPECT_EQ(w.good, 2);  // no objectives: every unaborted request is good
  // The aborted request never had a first token: no TTFT and no TPOT for it.
  EXPECT_EQ(w.ttft_ms.size(), 3u);
  EXPECT_DOUBLE_EQ(w.percentile_ms(LatencyMetric::kTtft, 100).value(), 200);
  EXPECT_DOUBLE_EQ(w.percentile_ms(LatencyMetric::kTtft, 1).value(), 100);

  const SliWindow empty = SliMonitor().window(kSpan);
  EXPECT_EQ(empty.completed, 0);
  EXPECT_EQ(empty.mean_prompt_tokens, 0);
  EXPECT_FALSE(empty.percentile_ms(LatencyMetric::kE2e, 95).has_value());
  EXPECT_FALSE(empty.violates(Slo{}));
}

TEST(SliMonitor, PercentilesAreNearestRank) {
  SliMonitor monitor;
  for (int i = 20; i >= 1; --i) monitor.on_finished(finished(0.001 * i, 0.001 * i, 1, 1));
  const SliWindow w = monitor.window(kSpan);
  auto e2e = [&](double p) { return w.percentile_ms(LatencyMetric::kE2e, p).value(); };
  EXPECT_NEAR(e2e(95), 19, 1e-9);
  EXPECT_NEAR(e2e(50), 10, 1e-9);
  EXPECT_NEAR(e2e(51), 11, 1e-9);
  EXPECT_NEAR(e2e(5), 1, 1e-9);
  EXPECT_NEAR(e2e(0), 1, 1e-9);
  EXPECT_NEAR(e2e(100), 20, 1e-9);
  EXPECT_NEAR(e2e(99), 20, 1e-9);
  EXPECT_NEAR(w.percentile_ms(LatencyMetric::kTtft, 95).value(), 19, 1e-9);
  // One output token each: no TPOT at all.
  EXPECT_FALSE(w.percentile_ms(LatencyMetric::kTpot, 95).has_value());

  // Ranks that are whole numbers in decimal but not in binary: p99.9 of
  // 1000 values is the 999th, p55 of 100 the 55th.
  SliMonitor many;
  for (int i = 1; i <= 1000; ++i) many.on_finished(finished(0.001 * i, 0.001 * i, 1, 1));
  const SliWindow m = many.window(kSpan);
  EXPECT_NEAR(m.percentile_ms(LatencyMetric::kE2e, 99.9).value(), 999, 1e-9);
  EXPECT_NEAR(m.percentile_ms(LatencyMetric::kE2e, 99.95).value(), 1000, 1e-9);
  EXPECT_NEAR(m.percentile_ms(LatencyMetric::kE2e, 55).value(), 550, 1e-9);
  EXPECT_NEAR(m.percentile_ms(LatencyMetric::kE2e, 50).value(), 500, 1e-9);
  SliMonitor hundred;
  for (int i = 1; i <= 100; ++i) hundred.on_finished(finished(0.001 * i, 0.001 * i, 1, 1));
  EXPECT_NEAR(hundred.window(kSpan).percentile_ms(LatencyMetric::kE2e, 55).value(), 55, 1e-9);
}

TEST(SliMonitor, GoodputCountsRequestsMeetingEveryObjective) {
  SliMonitor monitor;
  Slo slo;
  slo.latency.push_back({LatencyMetric::kTtft, 95, 100});
  slo.latency.push_back({LatencyMetric::kTpot, 95, 20});
  monitor.set_slo(slo);
  monitor.on_finished(finished(0.05, 0.05 + 9 * 0.010, 10, 10));        // good: TTFT 50, TPOT 10
  monitor.on_finished(finished(0.20, 0.20 + 9 * 0.010, 10, 10));        // TTFT 200
  monitor.on_finished(finished(0.05, 0.05 + 9 * 0.030, 10, 10));        // TPOT 30
  monitor.on_finished(finished(0.05, 0.14, 10, 10, /*aborted=*/true));  // aborted
  monitor.on_finished(finished(0.05, 0.05, 10, 1));                      // good: too short for a TPOT
  monitor.on_finished(finished(-1, 0.10, 10, 0));                        // never had a first token
  const SliWindow w = monitor.window(kSpan);
  EXPECT_EQ(w.completed, 6);
  EXPECT_EQ(w.good, 2);
  EXPECT_DOUBLE_EQ(w.goodput_rps, 2 / w.seconds);
  // TPOT over the requests that have one: 10, 10, 30, 10 ms.
  EXPECT_NEAR(w.percentile_ms(LatencyMetric::kTpot, 50).value(), 10, 1e-9);
  EXPECT_NEAR(w.percentile_ms(LatencyMetric::kTpot, 100).value(), 30, 1e-9);
  // Objectives set later judge the same requests again: without any,
  // every unaborted request is good.
  monitor.set_slo(Slo{});
  EXPECT_EQ(monitor.window(kSpan).good, 5);
}

TEST(SliMonitor, WindowsOfOneConfiguration) {
  SliMonitor monitor;
  monitor.set_config("base");
  EXPECT_EQ(monitor.config(), "base");
  for (int i = 0; i < 3; ++i) monitor.on_arrival(request(4), true);
  monitor.on_step(8, 0.01, 1, 0, 0.1);
  monitor.on_finished(finished(0.1, 0.5, 4, 8));
  monitor.set_config("int8");
  for (int i = 0; i < 5; ++i) monitor.on_arrival(request(4), i != 0);
  monitor.on_step(8, 0.01, 1, 0, 0.1);
  monitor.on_step(8, 0.01, 1, 0, 0.1);
  monitor.on_finished(finished(0.1, 0.5, 4, 8));
  monitor.on_finished(finished(0.3, 0.9, 4, 8));

  const SliWindow base = monitor.window(kSpan, "base"), int8 = monitor.window(kSpan, "int8");
  const SliWindow all = monitor.window(kSpan), other = monitor.window(kSpan, "int4-g32");
  EXPECT_EQ(base.arrivals, 3);
  EXPECT_EQ(base.rejected, 0);
  EXPECT_EQ(base.steps, 1);
  EXPECT_EQ(base.completed, 1);
  EXPECT_EQ(int8.arrivals, 5);
  EXPECT_EQ(int8.rejected, 1);
  EXPECT_EQ(int8.steps, 2);
  EXPECT_EQ(int8.completed, 2);
  EXPECT_NEAR(int8.percentile_ms(LatencyMetric::kTtft, 100).value(), 300, 1e-9);
  EXPECT_EQ(all.arrivals, 8);
  EXPECT_EQ(all.completed, 3);
  EXPECT_EQ(other.arrivals, 0);
  EXPECT_EQ(other.completed, 0);
}

TEST(SliMonitor, ViolatesNeedsEnoughSamples) {
  Slo slo;
  slo.latency.push_back({LatencyMetric::kE2e, 95, 18.5});
  SliMonitor monitor;
  for (int i = 1; i <= 4; ++i) monitor.on_finished(finished(0.001, 0.1 * i, 1, 1));  // 100..400 ms
  EXPECT_FALSE(monitor.window(kSpan).violates(slo));                                 // 4 < 5 samples
  EXPECT_TRUE(monitor.window(kSpan).violates(slo, 4));
  SliMonitor twenty;
  for (int i = 1; i <= 20; ++i) twenty.on_finished(finished(0.001 * i, 0.001 * i, 1, 1));
  EXPECT_TRUE(twenty.window(kSpan).violates(slo));  // p95 = 19 ms > 18.5
  slo.latency[0].ms = 19.5;
  EXPECT_FALSE(twenty.window(kSpan).violates(slo));
  slo.latency.push_back({LatencyMetric::kTtft, 50, 5});  // p50 TTFT 10 ms
  EXPECT_TRUE(twenty.window(kSpan).violates(slo));
}

// Feeds `n` requests through the monitor as AsyncEngine does: the tokens are
// kept only when on_arrival asked for them. Returns how many it kept.
int serve(SliMonitor& monitor, int n, bool abort_every_third = false) {
  int kept = 0;
  for (int i = 0; i < n; ++i) {
    const Request r = request(3);
    const bool keep = monitor.on_arrival(r, true);
    kept += keep;
    FinishedRequest f = finished(0.01, 0.05, 3, 2, abort_every_third && i % 3 == 0);
    if (keep) {
      f.prompt = r.prompt;
      f.output = {int32_t(i), int32_t(i + 1)};
    }
    monitor.on_finished(std::move(f));
  }
  return kept;
}

TEST(SliMonitor, SamplingKeepsTheRequestedFraction) {
  std::vector<FinishedRequest> sampled;
  auto sink = [&](FinishedRequest&& r) { sampled.push_back(std::move(r)); };

  SliMonitor all;
  all.set_sampling(1.0, sink);
  EXPECT_FALSE(all.on_arrival(request(3), /*admitted=*/false));  // a rejected request is never kept
  EXPECT_EQ(serve(all, 30, /*abort_every_third=*/true), 30);
  EXPECT_EQ(sampled.size(), 20u);  // aborted ones are not scored
  for (const FinishedRequest& r : sampled) {
    EXPECT_FALSE(r.aborted);
    EXPECT_EQ(r.prompt, std::vector<int32_t>(3, 7));
    ASSERT_EQ(r.output.size(), 2u);
    EXPECT_EQ(r.output[1], r.output[0] + 1);
  }

  sampled.clear();
  SliMonitor none;
  none.set_sampling(0.0, sink);
  EXPECT_EQ(serve(none, 200), 0);
  EXPECT_TRUE(sampled.empty());

  SliMonitor unset;  // no sink: nothing is kept
  EXPECT_EQ(serve(unset, 50), 0);

  sampled.clear();
  SliMonitor half(std::chrono::seconds(300), /*seed=*/42);
  half.set_sampling(0.5, sink);
  const int kept = serve(half, 1000);
  EXPECT_GT(kept, 400);  // binomial(1000, 0.5): 5 standard deviations either way
  EXPECT_LT(kept, 600);
  EXPECT_EQ(sampled.size(), size_t(kept));
  // The same seed keeps the same requests.
  SliMonitor again(std::chrono::seconds(300), /*seed=*/42);
  again.set_sampling(0.5, [](FinishedRequest&&) {});
  EXPECT_EQ(serve(again, 1000), kept);
}

TEST(SliMonitor, StepFitRecoversTheStepCost) {
  SliMonitor monitor;
  monitor.set_config("int8");
  // All steps one size: a cannot be told from b.
  for (int i = 0; i < 10; ++i) monitor.on_step(1, 0.020 + 0.0005, 1, 0, 0);
  EXPECT_FALSE(monitor.step_fit("int8").has_value());
  EXPECT_EQ(monitor.steps_seen("int8"), 10);
  // Steps of varied size, noise-free: a = 20 ms, b = 0.5 ms exactly.
  const int sizes[] = {1, 8, 32, 64, 3, 17, 128, 2};
  for (int round = 0; round < 5; ++round) {
    for (int n : sizes) monitor.on_step(n, 0.020 + 0.0005 * n, 4, 0, 0.1);
  }
  monitor.on_step(0, 0.5, 0, 0, 0);  // an empty step is not a sample
  std::optional<std::pair<double, double>> f = monitor.step_fit("int8");
  ASSERT_TRUE(f.has_value());
  EXPECT_NEAR(f->first, 0.020, 1e-9);
  EXPECT_NEAR(f->second, 0.0005, 1e-12);
  EXPECT_EQ(monitor.steps_seen("int8"), 50);
  EXPECT_FALSE(monitor.step_fit("base").has_value());
  EXPECT_EQ(monitor.steps_seen("base"), 0);

  // Another configuration keeps its own fit.
  monitor.set_config("base");
  for (int round = 0; round < 5; ++round) {
    for (int n : sizes) monitor.on_step(n, 0.040 + 0.001 * n, 4, 0, 0.1);
  }
  ASSERT_TRUE(monitor.step_fit("base").has_value());
  EXPECT_NEAR(monitor.step_fit("base")->first, 0.040, 1e-9);
  EXPECT_NEAR(monitor.step_fit("int8")->first, 0.020, 1e-9);

  // Noisy steps: exactly the fit of a StepCostModel (decay 0.98) fed the
  // same steps; after the machine slows down it follows the new cost.
  SliMonitor noisy;
  StepCostModel reference;
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int> size(1, 64);
  std::normal_distribution<double> noise(0, 0.001);
  auto step = [&](double a, double b) {
    const int n = size(rng);
    const double t = a + b * n + noise(rng);
    noisy.on_step(n, t, 1, 0, 0);
    reference.observe(n, t);
  };
  for (int i = 0; i < 300; ++i) step(0.020, 0.0005);
  ASSERT_TRUE(noisy.step_fit("").has_value());
  EXPECT_DOUBLE_EQ(noisy.step_fit("")->first, reference.intercept());
  EXPECT_DOUBLE_EQ(noisy.step_fit("")->second, reference.slope());
  for (int i = 0; i < 800; ++i) step(0.060, 0.0010);
  EXPECT_DOUBLE_EQ(noisy.step_fit("")->first, reference.intercept());
  EXPECT_DOUBLE_EQ(noisy.step_fit("")->second, reference.slope());
  EXPECT_NEAR(noisy.step_fit("")->first, 0.060, 0.002);
  EXPECT_NEAR(noisy.step_fit("")->second, 0.0010, 0.0001);
}

}  // namespace
}  // namespace tidal
