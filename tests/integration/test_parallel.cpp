// Tensor, pipeline and data parallelism with the in-process communicator
// against one device: the golden prompts give identical greedy tokens and
// last-position logits within 1e-4 (pipeline parallelism, which changes no
// reduction, gives bit-identical logits).
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "engine/model_runner.h"
#include "parallel/deployment.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

constexpr float kLogitTolerance = 1e-4f;

// Runs the golden cases through `parallel` and checks them against one device.
void expect_matches_one_device(TestModel& m, const Golden& golden, const ParallelConfig& parallel, bool bit_exact,
                               int num_kv_blocks) {
  const int vocab = m.model->config.vocab_size;
  ModelRunner one(*m.model, *m.backend);
  const auto want = prefill_logits(one, golden.requests, vocab);

  Deployment deployment(*m.model, parallel, /*threads=*/1);
  {
    // An executor of the deployment, on its own.
    auto executors = deployment.executors();
    const auto got = prefill_logits(*executors.back(), golden.requests, vocab);
    for (size_t i = 0; i < want.size(); ++i) {
      if (bit_exact) {
        EXPECT_EQ(got[i], want[i]) << "case " << i;
      } else {
        EXPECT_LT(max_abs_diff(got[i], want[i]), kLogitTolerance) << "case " << i;
      }
    }
  }

  Deployment engine_deployment(*m.model, parallel, /*threads=*/1);
  LLMEngine engine(m.model->config, *m.tokenizer, engine_deployment.executors(), small_engine_config(num_kv_blocks));
  const auto outputs = run_all(engine, golden.requests);
  ASSERT_EQ(outputs.size(), golden.greedy.size());
  for (size_t i = 0; i < outputs.size(); ++i) EXPECT_EQ(outputs[i].tokens, golden.greedy[i]) << "case " << i;
  EXPECT_EQ(engine.stats().num_used_blocks, 0);
  if (parallel.dp > 1) {
    // Least outstanding work spreads the batch over every replica.
    const EngineStats s = engine.stats();
    ASSERT_EQ(s.replicas.size(), size_t(parallel.dp));
    for (const EngineStats& r : s.replicas) EXPECT_GT(r.generation_tokens, 0u);
  }
}

ParallelConfig layout(int tp, int pp, int dp) {
  ParallelConfig p;
  p.tp = tp;
  p.pp = pp;
  p.dp = dp;
  return p;
}

TEST(ParallelStories260K, TensorParallel2) {
  TestModel m = load_stories();
  expect_matches_one_device(m, load_golden(*m.tokenizer, "stories260K", false, 64), layout(2, 1, 1), false, 256);
}

TEST(ParallelStories260K, PipelineParallel2IsBitExact) {
  TestModel m = load_stories();
  expect_matches_one_device(m, load_golden(*m.tokenizer, "stories260K", false, 64), layout(1, 2, 1), true, 256);
}

TEST(ParallelStories260K, TensorTimesPipeline) {
  TestModel m = load_stories();
  expect_matches_one_device(m, load_golden(*m.tokenizer, "stories260K", false, 64), layout(2, 2, 1), false, 256);
}

TEST(ParallelStories260K, DataParallel2) {
  TestModel m = load_stories();
  expect_matches_one_device(m, load_golden(*m.tokenizer, "stories260K", false, 64), layout(1, 1, 2), true, 256);
}

TEST(ParallelStories260K, DataParallelReplicasOfTensorParallel) {
  TestModel m = load_stories();
  expect_matches_one_device(m, load_golden(*m.tokenizer, "stories260K", false, 64), layout(2, 1, 2), false, 256);
}

// 9 query heads and 3 KV heads: TP=3 gives each rank 3 query heads sharing
// one KV head, and 512 of the 1536 FFN units (whole Q4_1 blocks).
TEST(ParallelSmolLM2, TensorParallel3) {
  if (!std::filesystem::exists(smollm2_path())) GTEST_SKIP() << "run tools/setup_model.sh to install SmolLM2";
  TestModel m = load_test_model(smollm2_path(), smollm2_path());
  expect_matches_one_device(m, load_golden(*m.tokenizer, "smollm2", true, 32), layout(3, 1, 1), false, 64);
}

// The last stage also holds the 49152-row LM head; stage 0 the embedding.
TEST(ParallelSmolLM2, PipelineParallel2IsBitExact) {
  if (!std::filesystem::exists(smollm2_path())) GTEST_SKIP() << "run tools/setup_model.sh to install SmolLM2";
  TestModel m = load_test_model(smollm2_path(), smollm2_path());
  expect_matches_one_device(m, load_golden(*m.tokenizer, "smollm2", true, 32), layout(1, 2, 1), true, 64);
}

TEST(ParallelSmolLM2, DataParallel2) {
  if (!std::filesystem::exists(smollm2_path())) GTEST_SKIP() << "run tools/setup_model.sh to install SmolLM2";
  TestModel m = load_test_model(smollm2_path(), smollm2_path());
  expect_matches_one_device(m, load_golden(*m.tokenizer, "smollm2", true, 32), layout(1, 1, 2), true, 64);
}

TEST(ParallelSmolLM2, TensorParallelMustDivideTheKvHeads) {
  if (!std::filesystem::exists(smollm2_path())) GTEST_SKIP() << "run tools/setup_model.sh to install SmolLM2";
  TestModel m = load_test_model(smollm2_path(), smollm2_path());
  try {
    Deployment d(*m.model, layout(2, 1, 1), 1);
    FAIL() << "TP=2 accepted for 3 KV heads";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("3 KV heads"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tidal::test
