// The reconfigurator's policy (reconfig/policy.h) on synthetic monitors:
// the most accurate candidate that carries the load is chosen and unknown
// or failing variants never are; monotonicity pruning of variants
// (more_aggressive) and of batch sizes (estimate_capacity); hysteresis and
// dwell keep noisy loads from making it flap; operator pins and measured
// violations are respected.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "reconfig/policy.h"

namespace tidal {
namespace {

// Objectives: TPOT 50 ms (a step may take 45 ms at margin 0.9), TTFT 1 s.
Slo test_slo(std::optional<double> accuracy = 0.95) {
  Slo slo;
  slo.latency.push_back({LatencyMetric::kTtft, 95, 1000});
  slo.latency.push_back({LatencyMetric::kTpot, 95, 50});
  slo.accuracy = accuracy;
  return slo;
}

StepFit fit(double a, double b) {
  StepFit f;
  f.a = a;
  f.b = b;
  f.source = "calibration";
  f.observations = 3;
  return f;
}

// base: 20 ms + 0.5 ms/token: batch 32 (36 ms) fits, 64 (52 ms) does not;
// one request of 100 + 100 tokens costs 100*b + 100*(a/32 + b) = 0.1625 s.
const StepFit kBaseFit = fit(0.020, 0.0005);
const double kBaseCapacity = 1.0 / 0.1625;  // 6.15 req/s
// int8: 10 ms + 0.3 ms/token: batch 64 (29.2 ms) fits, 128 (48.4 ms) does not;
// 100*b + 100*(a/64 + b) = 0.075625 s per request.
const StepFit kFastFit = fit(0.010, 0.0003);
const double kFastCapacity = 1.0 / 0.075625;  // 13.2 req/s

CandidateState candidate(const std::string& variant, AccuracyVerdict verdict, std::optional<StepFit> f) {
  CandidateState c;
  c.variant = variant;
  c.verdict = verdict;
  c.lower_bound = verdict == AccuracyVerdict::kMeets ? 0.97 : 0.5;
  c.fit = f;
  return c;
}

SliWindow load(double rps) {
  SliWindow w;
  w.seconds = 60;
  w.arrival_rps = rps;
  w.completed = 100;
  w.mean_prompt_tokens = 100;
  w.mean_output_tokens = 100;
  return w;
}

// The configuration the policy itself sets for a variant whose largest
// TPOT-meeting batch is `max_batch`.
ServedConfig config(const std::string& variant, int max_batch) {
  ServedConfig c;
  c.variant = variant;
  c.max_num_seqs = max_batch;
  c.target_tpot_ms = 50 * PolicyOptions{}.latency_margin;
  return c;
}

PolicyInput two_candidates(double rps, AccuracyVerdict int8_verdict, const std::string& current = "base") {
  PolicyInput in;
  in.slo = test_slo();
  in.current = current == "base" ? config("base", 32) : config(current, 64);
  in.candidates = {candidate("base", AccuracyVerdict::kUnknown, kBaseFit), candidate("int8", int8_verdict, kFastFit)};
  in.load = load(rps);
  return in;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(ReconfigPolicy, ChoosesTheMostAccurateCandidateThatCarriesTheLoad) {
  const PolicyOptions options;
  // 8 req/s: base at 1.3 utilization, int8 at 0.61.
  const Decision loaded = decide(two_candidates(8, AccuracyVerdict::kMeets), options);
  EXPECT_EQ(loaded.target.variant, "int8") << loaded.reason;
  EXPECT_EQ(loaded.target.max_num_seqs, 64);
  EXPECT_DOUBLE_EQ(loaded.target.target_tpot_ms, 45);
  EXPECT_TRUE(loaded.change);
  EXPECT_FALSE(loaded.urgent);
  EXPECT_TRUE(contains(loaded.reason, "int8 is the most accurate candidate")) << loaded.reason;
  EXPECT_TRUE(loaded.wanted.empty());
  ASSERT_EQ(loaded.evaluated.size(), 2u);
  ASSERT_TRUE(loaded.evaluated[0].capacity && loaded.evaluated[1].capacity);
  EXPECT_NEAR(loaded.evaluated[0].capacity->utilization, 8 / kBaseCapacity, 1e-9);
  EXPECT_NEAR(loaded.evaluated[1].capacity->utilization, 8 / kFastCapacity, 1e-9);

  // Idle, and at a load the base carries: the base, with nothing to change.
  for (double rps : {0.0, 3.0}) {
    const Decision idle = decide(two_candidates(rps, AccuracyVerdict::kMeets), options);
    EXPECT_EQ(idle.target.variant, "base") << rps;
    EXPECT_EQ(idle.target.max_num_seqs, 32) << rps;
    EXPECT_FALSE(idle.change) << rps;
    EXPECT_TRUE(idle.reason.starts_with("stay: base is the most accurate")) << idle.reason;
  }
  // From int8, an idle server goes back to the base.
  const Decision back = decide(two_candidates(0, AccuracyVerdict::kMeets, "int8"), options);
  EXPECT_EQ(back.target.variant, "base");
  EXPECT_EQ(back.target.max_num_seqs, 32);
  EXPECT_TRUE(back.change);
}

TEST(ReconfigPolicy, ABacklogCountsAsDemandWhenArrivalsPause) {
  // No arrivals in the window, but 480 requests still wait: 8 req/s of
  // demand over the 60 s window, more than the base carries.
  PolicyInput in = two_candidates(0, AccuracyVerdict::kMeets);
  in.load.waiting = 480;
  const Decision d = decide(in, PolicyOptions{});
  EXPECT_EQ(d.target.variant, "int8") << d.reason;
  ASSERT_TRUE(d.evaluated[0].capacity);
  EXPECT_NEAR(d.evaluated[0].capacity->utilization, 8 / kBaseCapacity, 1e-9);
}

TEST(ReconfigPolicy, UnknownAccuracyIsNotChosenButWanted) {
  const PolicyOptions options;
  const Decision d = decide(two_candidates(8, AccuracyVerdict::kUnknown), options);
  EXPECT_EQ(d.target.variant, "base") << d.reason;
  EXPECT_FALSE(d.change);
  EXPECT_TRUE(contains(d.reason, "no candidate carries 8.00 req/s; base has the most capacity")) << d.reason;
  EXPECT_FALSE(d.evaluated[1].accuracy_ok);
  EXPECT_TRUE(d.evaluated[1].excluded.starts_with("accuracy unknown")) << d.evaluated[1].excluded;
  EXPECT_EQ(d.wanted, std::vector<std::string>{"int8"});

  // Not wanted when the base carries the load anyway, nor when int8 would
  // not carry it either (20 req/s: utilization 1.5).
  EXPECT_TRUE(decide(two_candidates(3, AccuracyVerdict::kUnknown), options).wanted.empty());
  EXPECT_TRUE(decide(two_candidates(20, AccuracyVerdict::kUnknown), options).wanted.empty());

  // Without an accuracy objective any variant will do, unknown or not.
  PolicyInput any = two_candidates(8, AccuracyVerdict::kUnknown);
  any.slo.accuracy.reset();
  const Decision free = decide(any, options);
  EXPECT_EQ(free.target.variant, "int8") << free.reason;
  EXPECT_TRUE(free.wanted.empty());
}

TEST(ReconfigPolicy, FailingAccuracyIsNeverChosen) {
  const PolicyOptions options;
  const Decision d = decide(two_candidates(8, AccuracyVerdict::kFails), options);
  EXPECT_EQ(d.target.variant, "base") << d.reason;
  EXPECT_FALSE(d.change);
  EXPECT_TRUE(d.wanted.empty());
  EXPECT_TRUE(d.evaluated[1].excluded.starts_with("misses the accuracy objective (lower bound 0.500)"))
      << d.evaluated[1].excluded;
}

TEST(ReconfigPolicy, StaysOnTheBaseWhenNoVariantMeetsTheObjective) {
  const PolicyOptions options;
  PolicyInput in;
  in.slo = test_slo(0.999);
  in.current = config("base", 32);
  in.candidates = {candidate("base", AccuracyVerdict::kUnknown, kBaseFit),
                   candidate("int8", AccuracyVerdict::kFails, kFastFit),
                   candidate("w4a16-g32", AccuracyVerdict::kFails, kFastFit),
                   candidate("int8-rot", AccuracyVerdict::kFails, kFastFit)};
  for (double rps : {0.0, 4.0, 8.0, 50.0}) {
    in.load = load(rps);
    const Decision d = decide(in, options);
    EXPECT_EQ(d.target.variant, "base") << rps << ": " << d.reason;
    EXPECT_FALSE(d.change) << rps;
    for (size_t i = 1; i < d.evaluated.size(); ++i) EXPECT_FALSE(d.evaluated[i].excluded.empty());
    if (rps >= 8) {
      EXPECT_TRUE(contains(d.reason, "no candidate carries")) << d.reason;
      EXPECT_TRUE(contains(d.reason, "base has the most capacity")) << d.reason;
    }
  }
}

TEST(ReconfigPolicy, OverloadFallsBackToTheAccuracyOkCandidateWithMostCapacity) {
  // 30 req/s: nobody carries it; int8 (listed last) has the most capacity.
  PolicyInput in;
  in.slo = test_slo();
  in.current = config("base", 32);
  in.candidates = {candidate("base", AccuracyVerdict::kUnknown, kBaseFit),
                   candidate("w4a16-g32", AccuracyVerdict::kMeets, fit(0.015, 0.0004)),
                   candidate("int4-g32", AccuracyVerdict::kFails, fit(0.001, 0.0001)),
                   candidate("int8", AccuracyVerdict::kMeets, kFastFit)};
  in.load = load(30);
  const Decision d = decide(in, PolicyOptions{});
  EXPECT_EQ(d.target.variant, "int8") << d.reason;
  EXPECT_TRUE(d.change);
  EXPECT_TRUE(contains(d.reason, "no candidate carries 30.00 req/s; int8 has the most capacity")) << d.reason;
}

TEST(ReconfigPolicy, MoreAggressiveOrdersVariantsOfOneDerivation) {
  struct Case {
    const char *a, *b;
    bool expected;
  };
  const Case cases[] = {
      {"w4a16-g128", "w4a16-g32", true},   // coarser groups
      {"w4a16-g32", "w4a16-g128", false},
      {"int4-g128", "int8-g32", true},     // fewer bits and coarser groups
      {"int4-g32", "int8-g32", true},      // fewer bits
      {"int8", "int8-g32", true},          // per-row scales are the coarsest
      {"int8-g32", "int8", false},
      {"int4-g32", "int8-g128", false},    // fewer bits but finer groups: not comparable
      {"int8-g32", "int8-g32", false},     // not strictly
      {"int8-rot", "int8", false},         // rotation differs
      {"int8", "int8-rot", false},
      {"int4-g32", "int8-g32-rot", false},
      {"int8-g32-rot", "int8-rot", false}, // finer groups
      {"int8-rot", "int8-g32-rot", true},
      {"w4a16-g32", "int8-g32", false},    // another family
      {"int4-g32", "w8a16-g32", false},
      {"w4a16-g32", "w8a16-g32", true},
      {"f16", "f32", false},               // rounding, not ordered
      {"bf16", "f32", false},
      {"int8", "f32", false},
      {"int8", "base", false},
  };
  for (const Case& c : cases) EXPECT_EQ(more_aggressive(c.a, c.b), c.expected) << c.a << " vs " << c.b;
}

TEST(ReconfigPolicy, FailingVariantPrunesTheMoreAggressiveOnes) {
  // Only the fast int8 and int4-g32 would carry 8 req/s; both are derived
  // like int8-g32 but more aggressively.
  auto input = [](AccuracyVerdict g32) {
    PolicyInput in;
    in.slo = test_slo();
    in.current = config("base", 32);
    in.candidates = {candidate("base", AccuracyVerdict::kUnknown, kBaseFit),
                     candidate("int8-g32", g32, kBaseFit),
                     candidate("int8-rot", AccuracyVerdict::kMeets, kBaseFit),
                     candidate("w4a16-g32", AccuracyVerdict::kMeets, kBaseFit),
                     candidate("int8", AccuracyVerdict::kMeets, kFastFit),
                     candidate("int4-g32", AccuracyVerdict::kUnknown, kFastFit)};
    in.load = load(8);
    return in;
  };
  const Decision d = decide(input(AccuracyVerdict::kFails), PolicyOptions{});
  ASSERT_EQ(d.evaluated.size(), 6u);
  EXPECT_TRUE(d.evaluated[1].excluded.starts_with("misses the accuracy objective")) << d.evaluated[1].excluded;
  EXPECT_EQ(d.evaluated[2].excluded, "");
  EXPECT_EQ(d.evaluated[3].excluded, "");
  EXPECT_EQ(d.evaluated[4].excluded, "pruned: int8-g32 misses the accuracy objective");
  EXPECT_EQ(d.evaluated[5].excluded, "pruned: int8-g32 misses the accuracy objective");
  EXPECT_NE(d.target.variant, "int8") << d.reason;
  EXPECT_NE(d.target.variant, "int4-g32") << d.reason;
  EXPECT_TRUE(d.wanted.empty());  // a pruned unknown variant is not worth sampling

  // Unknown does not prune: int8 is then chosen, and int4-g32 not wanted (int8 comes first).
  const Decision unpruned = decide(input(AccuracyVerdict::kUnknown), PolicyOptions{});
  EXPECT_EQ(unpruned.evaluated[4].excluded, "");
  EXPECT_EQ(unpruned.target.variant, "int8") << unpruned.reason;
  EXPECT_TRUE(unpruned.change);
  EXPECT_TRUE(unpruned.wanted.empty());
}

TEST(ReconfigPolicy, CapacityTakesTheLargestPowerOfTwoBatchAndStopsAtTheFirstMiss) {
  const Slo slo = test_slo();
  // Step limit 45 ms: 1..32 fit, 64 misses; 256 is never tried.
  const CapacityEstimate base = estimate_capacity(kBaseFit, slo, 256, 100, 100, 3, 0.9);
  EXPECT_EQ(base.max_batch, 32);
  EXPECT_EQ(base.batches_tried, 7);  // 1, 2, 4, 8, 16, 32, 64
  EXPECT_NEAR(base.step_seconds, 0.036, 1e-12);
  EXPECT_NEAR(base.capacity_rps, kBaseCapacity, 1e-9);
  EXPECT_NEAR(base.utilization, 3 / kBaseCapacity, 1e-9);
  EXPECT_TRUE(base.ttft_ok);
  EXPECT_TRUE(base.feasible());

  // 10 ms per token: batch 4 (42 ms) fits, 8 (82 ms) misses.
  const CapacityEstimate small = estimate_capacity(fit(0.002, 0.010), slo, 256, 10, 10, 1, 0.9);
  EXPECT_EQ(small.max_batch, 4);
  EXPECT_EQ(small.batches_tried, 4);

  // A tighter margin moves the limit: 40 ms at 0.8 leaves batch 2 (22 ms).
  EXPECT_EQ(estimate_capacity(fit(0.002, 0.010), slo, 256, 10, 10, 1, 0.8).max_batch, 2);

  // Not even one sequence meets the objective.
  const CapacityEstimate none = estimate_capacity(fit(0.050, 0.0001), slo, 256, 100, 100, 2, 0.9);
  EXPECT_EQ(none.max_batch, 0);
  EXPECT_EQ(none.batches_tried, 1);
  EXPECT_EQ(none.capacity_rps, 0);
  EXPECT_TRUE(std::isinf(none.utilization));
  EXPECT_FALSE(none.feasible());
  EXPECT_EQ(estimate_capacity(fit(0.050, 0.0001), slo, 256, 100, 100, 0, 0.9).utilization, 0);

  // Without a TPOT objective every size up to the cap fits, the cap included.
  Slo no_tpot;
  const CapacityEstimate capped = estimate_capacity(kBaseFit, no_tpot, 100, 100, 100, 1, 0.9);
  EXPECT_EQ(capped.max_batch, 100);
  EXPECT_EQ(capped.batches_tried, 8);  // 1, 2, ..., 64, 100
  // The cap bounds a TPOT-limited scan too.
  EXPECT_EQ(estimate_capacity(kFastFit, slo, 16, 100, 100, 1, 0.9).max_batch, 16);
}

TEST(ReconfigPolicy, TtftObjectiveChecksALonePrefill) {
  const Slo slo = test_slo();  // TTFT 1 s: a prefill may take 0.9 s
  // 20 ms + 0.5 ms/token: 1760 prompt tokens take 0.9 s, 1800 take 0.92 s.
  EXPECT_TRUE(estimate_capacity(kBaseFit, slo, 256, 1700, 100, 1, 0.9).ttft_ok);
  const CapacityEstimate slow = estimate_capacity(kBaseFit, slo, 256, 1800, 100, 1, 0.9);
  EXPECT_FALSE(slow.ttft_ok);
  EXPECT_EQ(slow.max_batch, 32);  // decoding is fine, the prefill is not
  EXPECT_FALSE(slow.feasible());

  // The policy rules out such a candidate with that reason.
  PolicyInput in = two_candidates(1, AccuracyVerdict::kMeets);
  in.load.mean_prompt_tokens = 1800;  // the base misses TTFT, int8 (0.55 s) does not
  const Decision d = decide(in, PolicyOptions{});
  EXPECT_EQ(d.evaluated[0].excluded, "a prefill alone misses the TTFT objective");
  EXPECT_EQ(d.target.variant, "int8") << d.reason;
}

TEST(ReconfigPolicy, UtilizationBandKeepsAVariantUntilTheLoadHasClearlyDropped) {
  // 4.5 req/s: the base at 0.73, between up (0.6) and stay (0.85).
  const double between = 0.73 * kBaseCapacity;
  const PolicyOptions options;
  const Decision on_base = decide(two_candidates(between, AccuracyVerdict::kMeets, "base"), options);
  EXPECT_EQ(on_base.target.variant, "base");
  EXPECT_FALSE(on_base.change);
  const Decision on_int8 = decide(two_candidates(between, AccuracyVerdict::kMeets, "int8"), options);
  EXPECT_EQ(on_int8.target.variant, "int8") << on_int8.reason;
  EXPECT_FALSE(on_int8.change);
  // Below up_utilization the base is taken back.
  const Decision low = decide(two_candidates(0.55 * kBaseCapacity, AccuracyVerdict::kMeets, "int8"), options);
  EXPECT_EQ(low.target.variant, "base");
  EXPECT_TRUE(low.change);
  // Without the band, the same load moves int8 back to the base.
  PolicyOptions no_band;
  no_band.up_utilization = no_band.stay_utilization;
  EXPECT_TRUE(decide(two_candidates(between, AccuracyVerdict::kMeets, "int8"), no_band).change);
}

struct Simulation {
  int switches = 0;
  double min_gap = std::numeric_limits<double>::infinity();  // seconds between switches
};

// `rounds` decisions 2 s apart on a base-relative utilization drawn
// uniformly from [lo, hi], each decision applied.
Simulation simulate(const PolicyOptions& options, double lo, double hi, int rounds, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> utilization(lo, hi);
  PolicyInput in = two_candidates(0, AccuracyVerdict::kMeets);
  in.current = decide(in, options).target;  // start where the policy wants to be when idle
  Simulation sim;
  double now = 0, last_switch = -std::numeric_limits<double>::infinity();
  for (int r = 0; r < rounds; ++r, now += 2, in.seconds_since_switch += 2) {
    in.load = load(utilization(rng) * kBaseCapacity);
    const Decision d = decide(in, options);
    if (!d.change) continue;
    EXPECT_NE(d.target.variant, in.current.variant) << "round " << r << ": a switch of knobs alone: " << d.reason;
    ++sim.switches;
    sim.min_gap = std::min(sim.min_gap, now - last_switch);
    last_switch = now;
    in.current = d.target;
    in.seconds_since_switch = 0;
  }
  return sim;
}

TEST(ReconfigPolicy, NoisyLoadAtTheUpperEdgeSwitchesOnceThanksToHysteresis) {
  // Utilization of the base 0.72..0.98 around stay_utilization (0.85), no dwell:
  // it moves to int8 once and never falls below up_utilization to come back.
  PolicyOptions options;
  options.dwell_seconds = 0;
  const Simulation sim = simulate(options, 0.72, 0.98, 500, 1);
  EXPECT_EQ(sim.switches, 1);
  // The same noise without the band (nor dwell) flaps on almost every crossing.
  options.up_utilization = options.stay_utilization;
  EXPECT_GT(simulate(options, 0.72, 0.98, 500, 1).switches, 100);
}

TEST(ReconfigPolicy, NoisyLoadAcrossTheBandIsLimitedByTheDwell) {
  // Utilization 0.5..0.95 crosses both edges of the band often; a switch
  // needs 30 s (15 rounds) since the last one, so 500 rounds of 2 s allow
  // at most 1 + 998 / 30 = 34 switches.
  const PolicyOptions options;  // dwell 30 s
  constexpr int kRounds = 500;
  const Simulation sim = simulate(options, 0.5, 0.95, kRounds, 7);
  EXPECT_GE(sim.switches, 2);  // the scenario does switch
  EXPECT_LE(sim.switches, 1 + (kRounds - 1) * 2 / int(options.dwell_seconds));
  EXPECT_GE(sim.min_gap, options.dwell_seconds);
}

TEST(ReconfigPolicy, PinnedAndDwellKeepTheConfiguration) {
  const PolicyOptions options;
  PolicyInput in = two_candidates(8, AccuracyVerdict::kMeets);
  in.pinned = true;
  const Decision pinned = decide(in, options);
  EXPECT_FALSE(pinned.change);
  EXPECT_TRUE(pinned.reason.starts_with("pinned by the operator (would switch: int8")) << pinned.reason;

  in.pinned = false;
  in.seconds_since_switch = 10;
  const Decision dwell = decide(in, options);
  EXPECT_FALSE(dwell.change);
  EXPECT_TRUE(dwell.reason.starts_with("dwell: last switch 10.0 s ago")) << dwell.reason;

  in.seconds_since_switch = options.dwell_seconds;
  EXPECT_TRUE(decide(in, options).change);
}

TEST(ReconfigPolicy, AMeasuredViolationMovesToAFasterCandidateUrgently) {
  const PolicyOptions options;
  // 3 req/s: predicted to fit the base (0.49), but the base is measured missing an objective.
  PolicyInput in = two_candidates(3, AccuracyVerdict::kMeets);
  in.violating = true;
  const Decision d = decide(in, options);
  EXPECT_EQ(d.target.variant, "int8") << d.reason;
  EXPECT_TRUE(d.change);
  EXPECT_TRUE(d.urgent);

  // With no faster variant allowed there is nowhere to go.
  PolicyInput stuck = two_candidates(3, AccuracyVerdict::kFails);
  stuck.violating = true;
  const Decision s = decide(stuck, options);
  EXPECT_EQ(s.target.variant, "base") << s.reason;
  EXPECT_FALSE(s.change);
}

TEST(ReconfigPolicy, CandidatesWithoutAProfileCannotBeJudged) {
  PolicyInput in = two_candidates(8, AccuracyVerdict::kMeets);
  in.candidates[1].fit.reset();
  Decision d = decide(in, PolicyOptions{});
  EXPECT_EQ(d.evaluated[1].excluded, "no performance profile");
  EXPECT_EQ(d.target.variant, "base");
  in.candidates[0].fit.reset();
  d = decide(in, PolicyOptions{});
  EXPECT_FALSE(d.change);
  EXPECT_TRUE(d.reason.starts_with("no candidate can be judged")) << d.reason;

  const nlohmann::json j = decision_json(decide(two_candidates(8, AccuracyVerdict::kUnknown), PolicyOptions{}));
  EXPECT_EQ(j["target"]["variant"], "base");
  EXPECT_EQ(j["candidates"].size(), 2u);
  EXPECT_EQ(j["wanted"], nlohmann::json::array({"int8"}));
}

}  // namespace
}  // namespace tidal
