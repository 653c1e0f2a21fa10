// The pieces of csrc/parallel that need no second rank: which weights a
// rank holds, which splits are refused, how a step is cut into
// micro-batches and shipped, which replica takes a request, and the threads
// that step replicas at once.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <stdexcept>

#include "core/error.h"
#include "parallel/parallel_config.h"
#include "parallel/replica_router.h"
#include "parallel/replica_threads.h"
#include "parallel/shard.h"
#include "parallel/step_plan.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

ParallelConfig layout(int tp, int pp) {
  ParallelConfig p;
  p.tp = tp;
  p.pp = pp;
  return p;
}

TEST(ShardLayout, StagesTakeContiguousLayersAndRanksTakeVocabSlices) {
  ModelConfig c;
  c.n_layers = 5;
  c.vocab_size = 513;
  const ShardLayout first = shard_layout(c, layout(2, 2), 1);  // stage 0, tensor rank 1
  EXPECT_EQ(first.stage, 0);
  EXPECT_EQ(first.tp_rank, 1);
  EXPECT_EQ(first.layer_begin, 0);
  EXPECT_EQ(first.layer_end, 3);
  EXPECT_EQ(first.vocab_begin(), 257);
  EXPECT_EQ(first.vocab_end(), 513);
  const ShardLayout last = shard_layout(c, layout(2, 2), 2);  // stage 1, tensor rank 0
  EXPECT_TRUE(last.last_stage());
  EXPECT_EQ(last.layer_begin, 3);
  EXPECT_EQ(last.layer_end, 5);
}

TEST(ShardModel, RanksHoldTheirRowsAndColumns) {
  TestModel m = load_stories();
  const Model& full = *m.model;
  const ModelConfig& c = full.config;
  const ShardLayout s = shard_layout(c, layout(2, 2), 3);  // stage 1, tensor rank 1
  const Model shard = shard_model(full, s);
  EXPECT_EQ(shard.config.n_layers, s.layer_end - s.layer_begin);
  EXPECT_EQ(shard.config.n_heads, c.n_heads / 2);
  EXPECT_EQ(shard.config.n_kv_heads, c.n_kv_heads / 2);
  EXPECT_EQ(shard.config.hidden_dim, c.hidden_dim / 2);
  EXPECT_EQ(shard.token_embedding.data, nullptr);  // not the first stage
  EXPECT_EQ(shard.lm_head.rows, s.vocab_end() - s.vocab_begin());

  const LayerWeights& w = shard.layers[0];
  const LayerWeights& f = full.layers[size_t(s.layer_begin)];
  // Column parallel: rows of the second half of the heads, viewed in place.
  EXPECT_EQ(w.wq.data, f.wq.row(int64_t(c.n_heads / 2) * c.head_dim));
  EXPECT_EQ(w.w_up.data, f.w_up.row(c.hidden_dim / 2));
  // Row parallel: the same columns of every row, copied.
  ASSERT_EQ(w.w_down.cols, c.hidden_dim / 2);
  for (int64_t r = 0; r < w.w_down.rows; ++r) {
    const float* got = reinterpret_cast<const float*>(w.w_down.row(r));
    const float* want = reinterpret_cast<const float*>(f.w_down.row(r)) + c.hidden_dim / 2;
    ASSERT_EQ(std::memcmp(got, want, sizeof(float) * size_t(w.w_down.cols)), 0) << "row " << r;
  }
}

TEST(ParallelConfig, RefusesToSplitAQuantizedBlock) {
  Model model;
  model.config.n_layers = 1;
  model.config.n_heads = 4;
  model.config.n_kv_heads = 4;
  model.config.head_dim = 16;
  model.config.hidden_dim = 96;
  LayerWeights& layer = model.layers.emplace_back();
  layer.wo = Weight{DType::Q4_1, 64, 64, nullptr};
  layer.w_down = Weight{DType::Q4_1, 64, 96, nullptr};
  EXPECT_NO_THROW(check_parallel_config(model, layout(1, 1)));
  try {
    check_parallel_config(model, layout(2, 1));  // 48 columns of w_down per rank: 1.5 blocks
    FAIL() << "a split Q4_1 block was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("q4_1 block"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_parallel_config(model, layout(1, 2)), Error);  // 2 stages, 1 layer
}

// Sequences with the given numbers of new tokens, each sampling.
struct FakeStep {
  explicit FakeStep(const std::vector<int>& tokens) : seqs(tokens.size()) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      seqs[i].tokens.assign(size_t(tokens[i]), int32_t(i));
      seqs[i].prompt_len = tokens[i];
      seqs[i].blocks.blocks = {int32_t(2 * i), int32_t(2 * i + 1)};
      step.scheduled.push_back({&seqs[i], tokens[i], true});
    }
  }
  std::vector<Sequence> seqs;
  SchedulerOutput step;
};

TEST(StepPlan, MicroBatchesAreContiguousBalancedAndNeverEmpty) {
  FakeStep f({10, 1, 1, 1, 9, 2});
  std::vector<FlatBatch> mbs;
  plan_micro_batches(f.step, 16, 2, mbs);
  ASSERT_EQ(mbs.size(), 2u);
  EXPECT_EQ(mbs[0].n_tokens(), 12);  // sequences 0-2 reach half of the 24 tokens
  EXPECT_EQ(mbs[1].n_tokens(), 12);
  EXPECT_EQ(mbs[1].seq_index.front(), 0);  // indices restart in each micro-batch
  EXPECT_EQ(mbs[1].block_tables.size(), 3u);
  EXPECT_EQ(mbs[1].logits_rows, (std::vector<int32_t>{0, 9, 11}));

  FakeStep skewed({1, 1, 50});
  plan_micro_batches(skewed.step, 16, 3, mbs);
  ASSERT_EQ(mbs.size(), 3u);
  for (const FlatBatch& mb : mbs) EXPECT_GT(mb.n_tokens(), 0);

  FakeStep one({4});
  plan_micro_batches(one.step, 16, 4, mbs);
  EXPECT_EQ(mbs.size(), 1u);
}

TEST(StepPlan, EncodeDecodeRoundTripAndCorruptInput) {
  FakeStep f({3, 2});
  StepPlan plan;
  plan.copies = {{1, 7}, {2, 8}};
  plan_micro_batches(f.step, 16, 2, plan.micro_batches);
  const std::vector<uint8_t> bytes = encode_plan(plan);
  const StepPlan back = decode_plan(bytes);
  EXPECT_EQ(back.kind, StepPlan::Kind::kStep);
  ASSERT_EQ(back.copies.size(), 2u);
  EXPECT_EQ(back.copies[1].dst, 8);
  ASSERT_EQ(back.micro_batches.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back.micro_batches[i].tokens, plan.micro_batches[i].tokens);
    EXPECT_EQ(back.micro_batches[i].slots, plan.micro_batches[i].slots);
    EXPECT_EQ(back.micro_batches[i].block_tables, plan.micro_batches[i].block_tables);
    EXPECT_EQ(back.micro_batches[i].logits_rows, plan.micro_batches[i].logits_rows);
  }
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_THROW(decode_plan(std::vector<uint8_t>(bytes.begin(), bytes.begin() + long(cut))), Error) << cut;
  }
}

TEST(ReplicaRouter, LeastOutstandingTokensThenKvUsageThenIndex) {
  EXPECT_EQ(pick_replica(std::vector<ReplicaLoad>{{0, 0.0}, {0, 0.0}}), 0u);
  EXPECT_EQ(pick_replica(std::vector<ReplicaLoad>{{100, 0.0}, {40, 0.9}, {40, 0.5}}), 2u);
  EXPECT_EQ(pick_replica(std::vector<ReplicaLoad>{{5, 0.9}, {6, 0.0}}), 0u);
}

// A replica whose executor failed takes no request, however idle it looks:
// its load is what it was when it went down (zero, its requests failed).
TEST(ReplicaRouter, SkipsReplicasThatAreDown) {
  EXPECT_EQ(pick_replica(std::vector<ReplicaLoad>{{0, 0.0, false}, {500, 0.9, true}}), 1u);
  EXPECT_EQ(pick_replica(std::vector<ReplicaLoad>{{9, 0.0, true}, {0, 0.0, false}, {7, 0.5, true}}), 2u);
  EXPECT_EQ(pick_replica(std::vector<ReplicaLoad>{{0, 0.0, false}, {0, 0.0, false}}), std::nullopt);
  EXPECT_EQ(pick_replica(std::vector<ReplicaLoad>{}), std::nullopt);
}

TEST(ReplicaThreads, RunsEveryJobAtOnceAndRethrows) {
  ReplicaThreads threads(3);
  std::atomic<int> arrived{0};
  for (int round = 0; round < 20; ++round) {
    arrived = 0;
    // Each job waits for all three: they only finish if they run at once.
    threads.run([&](size_t) {
      ++arrived;
      while (arrived.load() < 3) std::this_thread::yield();
    });
  }
  EXPECT_THROW(threads.run([](size_t i) {
    if (i == 2) throw std::runtime_error("replica 2 failed");
  }),
               std::runtime_error);
  int ran = 0;
  threads.run([&](size_t i) {
    if (i == 0) ran = 1;
  });
  EXPECT_EQ(ran, 1);
}

}  // namespace
}  // namespace tidal::test
