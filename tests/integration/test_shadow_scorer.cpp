// Shadow monitoring's scorer (reconfig/shadow_scorer.h) against `tidal
// eval`'s evaluator on the same tokens: it must count the same top-1
// matches and KL over the served positions, whatever the chunking and the
// number of variants scored against one base run; and served_agreement,
// the offline count bench/adaptive.sh uses, must equal the scorer's
// top-1 matches on greedy output of the variant.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "engine/variant_evaluator.h"
#include "model/variant.h"
#include "reconfig/shadow_scorer.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

std::shared_ptr<const Model> derive(const Model& m, const char* name) {
  return std::make_shared<const Model>(derive_variant(m, *parse_variant(name)));
}

// Runs every unit at once, counting them.
ShadowScorer counting_scorer(ThreadPool& pool, int* units) {
  return ShadowScorer(pool, [units](const std::function<void()>& work) {
    ++*units;
    work();
  });
}

TEST(ShadowScorer, EqualsEvalOnTheSameTokens) {
  TestModel m = load_stories();
  const std::vector<int32_t> prompt = m.tokenizer->encode("Once upon a time, there was a little dog", true, true);
  // Served tokens: the base's greedy continuation, long enough to span
  // several chunks of the scorer.
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  const std::vector<Generated> served = run_all(engine, {greedy_request("s", prompt, 100)});
  const std::vector<int32_t>& output = served[0].tokens;
  ASSERT_EQ(output.size(), 100u);

  const auto int8 = derive(*m.model, "int8"), int4 = derive(*m.model, "int4-g128");
  int units = 0;
  ShadowScorer scorer = counting_scorer(*m.pool, &units);
  const std::vector<ShadowResult> results =
      scorer.score(*m.model, {{"int8", int8}, {"int4-g128", int4}}, prompt, output);
  ASSERT_EQ(results.size(), 2u);
  const int chunks = (int(prompt.size() + output.size()) - 1 + ShadowScorer::kChunk - 1) / ShadowScorer::kChunk;
  EXPECT_EQ(units, chunks * 3);  // the base once, each variant once, a chunk at a time

  // `tidal eval` scores every position of the window; its served part is
  // the window starting one token before the output. Evaluating from there
  // gives other logits for the prompt (no context), so compare against the
  // evaluator on the whole window minus its prompt positions: run it on the
  // window and on the prompt alone, and subtract.
  std::vector<int32_t> window = prompt;
  window.insert(window.end(), output.begin(), output.end());
  for (const ShadowResult& r : results) {
    const Model& v = r.variant == "int8" ? *int8 : *int4;
    const QualityTotals whole = evaluate_variant(v, *m.model, *m.backend, *m.pool, {window});
    const QualityTotals prompt_only = evaluate_variant(v, *m.model, *m.backend, *m.pool, {prompt});
    EXPECT_EQ(r.totals.positions, int64_t(output.size()));
    EXPECT_EQ(r.totals.positions, whole.positions - prompt_only.positions);
    EXPECT_EQ(r.totals.top1_matches, whole.top1_matches - prompt_only.top1_matches) << r.variant;
    EXPECT_NEAR(r.totals.kl, whole.kl - prompt_only.kl, 1e-9 * std::max(1.0, whole.kl)) << r.variant;
    EXPECT_NEAR(r.totals.variant_nll, whole.variant_nll - prompt_only.variant_nll, 1e-9 * whole.variant_nll);
  }
  // The two variants differ, and the coarse one agrees less.
  EXPECT_LT(results[1].totals.top1_matches, results[0].totals.top1_matches);

  // A prompt of BOS alone leaves every position served: then the scorer
  // and the evaluator add the same per-position scores in the same order.
  const std::vector<int32_t> bos = {window.front()};
  const std::vector<int32_t> rest(window.begin() + 1, window.end());
  const ShadowResult alone = scorer.score(*m.model, {{"int8", int8}}, bos, rest).front();
  const QualityTotals eval = evaluate_variant(*int8, *m.model, *m.backend, *m.pool, {window});
  EXPECT_EQ(alone.totals.positions, eval.positions);
  EXPECT_EQ(alone.totals.top1_matches, eval.top1_matches);
  EXPECT_EQ(alone.totals.kl, eval.kl);
  EXPECT_EQ(alone.totals.variant_nll, eval.variant_nll);
}

TEST(ShadowScorer, ScoringTheBaseAgainstItselfAgreesEverywhere) {
  TestModel m = load_stories();
  const std::vector<int32_t> prompt = m.tokenizer->encode("Lily and Tom", true, true);
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  const std::vector<Generated> served = run_all(engine, {greedy_request("s", prompt, 40)});
  const auto same = derive(*m.model, "f32");
  int units = 0;
  const std::vector<ShadowResult> r =
      counting_scorer(*m.pool, &units).score(*m.model, {{"f32", same}}, prompt, served[0].tokens);
  EXPECT_TRUE(r[0].greedy_agree());
  EXPECT_EQ(r[0].totals.top1_matches, 40);
}

TEST(ShadowScorer, ServedAgreementCountsTheBaseTop1OnAVariantsGreedyOutput) {
  TestModel m = load_stories();
  const auto int4 = derive(*m.model, "int4-g128");
  // The variant's own greedy output, served by an engine running it.
  LLMEngine engine(*int4, *m.tokenizer, *m.backend, small_engine_config());
  const std::vector<int32_t> prompt = m.tokenizer->encode("Once upon a time", true, true);
  const std::vector<Generated> served = run_all(engine, {greedy_request("v", prompt, 80)});
  int units = 0;
  const std::vector<ShadowResult> r =
      counting_scorer(*m.pool, &units).score(*m.model, {{"int4-g128", int4}}, prompt, served[0].tokens);
  const ServedAgreement a = served_agreement(*m.model, *m.backend, prompt, served[0].tokens);
  EXPECT_EQ(a.positions, r[0].totals.positions);
  EXPECT_EQ(a.matches, r[0].totals.top1_matches);
  EXPECT_LT(a.matches, a.positions);  // the coarse variant leaves the base's path somewhere
}

TEST(ShadowScorer, RefusesEmptySamples) {
  TestModel m = load_stories();
  int units = 0;
  ShadowScorer scorer = counting_scorer(*m.pool, &units);
  const std::vector<int32_t> prompt = {1, 2, 3};
  EXPECT_THROW(scorer.score(*m.model, {}, prompt, {}), Error);
  EXPECT_THROW(served_agreement(*m.model, *m.backend, {}, prompt), Error);
}

}  // namespace
}  // namespace tidal::test
