#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>

namespace tidal {
namespace {

// Plays the engine: runs schedule()+update(), then "samples" a fake token for
// every sequence that reached its end, finishing those at max_tokens.
class Sim {
 public:
  Sim(SchedulerConfig config, int num_blocks, int block_size, bool prefix_caching)
      : blocks(num_blocks, block_size, prefix_caching), sched(config, blocks) {}

  Sequence* add(int prompt_len, int max_tokens, int priority = 0, int32_t first_token = 0) {
    auto seq = std::make_unique<Sequence>();
    seq->id = int64_t(seqs.size());
    seq->arrival = next_arrival++;
    seq->priority = priority;
    for (int i = 0; i < prompt_len; ++i) seq->tokens.push_back(first_token + i);
    seq->prompt_len = prompt_len;
    max_tokens_.push_back(max_tokens);
    seqs.push_back(std::move(seq));
    sched.add(seqs.back().get());
    return seqs.back().get();
  }

  SchedulerOutput step() {
    SchedulerOutput out = sched.schedule();
    EXPECT_LE(out.num_batched_tokens, sched.config().max_num_batched_tokens);
    EXPECT_LE(out.scheduled.size(), size_t(sched.config().max_num_seqs));
    int total = 0;
    for (const ScheduledSeq& s : out.scheduled) {
      EXPECT_GT(s.num_new_tokens, 0);
      EXPECT_EQ(s.seq->status, SeqStatus::kRunning);
      // Blocks cover everything about to be computed.
      EXPECT_GE(int(s.seq->blocks.blocks.size()) * blocks.block_size(), s.seq->num_computed + s.num_new_tokens);
      total += s.num_new_tokens;
    }
    EXPECT_EQ(total, out.num_batched_tokens);
    sched.update(out);
    for (const ScheduledSeq& s : out.scheduled) {
      if (!s.sample) continue;
      EXPECT_EQ(s.seq->num_computed, int(s.seq->tokens.size()));
      s.seq->tokens.push_back(int32_t(10000 + s.seq->num_generated()));
      if (s.seq->num_generated() >= max_tokens_[s.seq->id]) sched.finish(s.seq);
    }
    return out;
  }

  bool all_finished() const {
    return std::all_of(seqs.begin(), seqs.end(), [](const auto& s) { return s->status == SeqStatus::kFinished; });
  }

  BlockManager blocks;
  Scheduler sched;
  std::vector<std::unique_ptr<Sequence>> seqs;

 private:
  std::vector<int> max_tokens_;
  int64_t next_arrival = 0;
};

SchedulerConfig config(int max_seqs, int max_tokens, bool priority = false) {
  SchedulerConfig c;
  c.max_num_seqs = max_seqs;
  c.max_num_batched_tokens = max_tokens;
  c.priority_policy = priority;
  return c;
}

bool contains(const SchedulerOutput& out, const Sequence* seq) {
  return std::any_of(out.scheduled.begin(), out.scheduled.end(), [&](const ScheduledSeq& s) { return s.seq == seq; });
}

TEST(Scheduler, ChunkedPrefillWithinTokenBudget) {
  Sim sim(config(8, 32), 64, 16, false);
  Sequence* seq = sim.add(100, 2);
  const int expected[] = {32, 32, 32, 4};
  for (int i = 0; i < 4; ++i) {
    SchedulerOutput out = sim.step();
    ASSERT_EQ(out.scheduled.size(), 1u);
    EXPECT_EQ(out.scheduled[0].num_new_tokens, expected[i]);
    EXPECT_EQ(out.scheduled[0].sample, i == 3);
  }
  EXPECT_EQ(seq->num_generated(), 1);
  SchedulerOutput out = sim.step();  // decode
  ASSERT_EQ(out.scheduled.size(), 1u);
  EXPECT_EQ(out.scheduled[0].num_new_tokens, 1);
  EXPECT_TRUE(out.scheduled[0].sample);
  EXPECT_EQ(seq->status, SeqStatus::kFinished);
  EXPECT_TRUE(sim.step().empty());
  EXPECT_EQ(sim.blocks.num_free_blocks(), 64);
}

TEST(Scheduler, DecodesGoBeforeNewPrefills) {
  Sim sim(config(8, 32), 64, 16, false);
  Sequence* a = sim.add(10, 100);
  sim.step();
  Sequence* b = sim.add(100, 1);
  SchedulerOutput out = sim.step();
  ASSERT_EQ(out.scheduled.size(), 2u);
  EXPECT_EQ(out.scheduled[0].seq, a);
  EXPECT_EQ(out.scheduled[0].num_new_tokens, 1);
  EXPECT_EQ(out.scheduled[1].seq, b);
  EXPECT_EQ(out.scheduled[1].num_new_tokens, 31);
  EXPECT_FALSE(out.scheduled[1].sample);
  EXPECT_EQ(out.num_batched_tokens, 32);
}

TEST(Scheduler, RespectsMaxNumSeqs) {
  Sim sim(config(2, 1000), 64, 16, false);
  Sequence* a = sim.add(5, 1);
  Sequence* b = sim.add(5, 3);
  Sequence* c = sim.add(5, 1);
  SchedulerOutput out = sim.step();
  EXPECT_EQ(out.scheduled.size(), 2u);
  EXPECT_FALSE(contains(out, c));
  EXPECT_EQ(sim.sched.num_waiting(), 1u);
  EXPECT_EQ(a->status, SeqStatus::kFinished);  // max_tokens = 1
  out = sim.step();
  EXPECT_TRUE(contains(out, b));
  EXPECT_TRUE(contains(out, c));
  while (!sim.all_finished()) sim.step();
  EXPECT_EQ(sim.blocks.num_free_blocks(), 64);
}

TEST(Scheduler, ForksToComeCountAgainstMaxNumSeqs) {
  // A request with n = 3 takes three of the four seats before it forks.
  Sim sim(config(4, 1000), 64, 16, false);
  Sequence* wide = sim.add(5, 4);
  wide->forks_to_come = 2;
  Sequence* b = sim.add(5, 4);
  Sequence* c = sim.add(5, 4);
  SchedulerOutput out = sim.sched.schedule();
  EXPECT_TRUE(contains(out, wide));
  EXPECT_TRUE(contains(out, b));
  EXPECT_FALSE(contains(out, c)) << "c would be the fifth running sequence once wide forks";
  // Wider than the limit: it still runs, alone.
  Sim alone(config(2, 1000), 64, 16, false);
  Sequence* widest = alone.add(5, 4);
  widest->forks_to_come = 4;
  Sequence* next = alone.add(5, 4);
  out = alone.sched.schedule();
  EXPECT_TRUE(contains(out, widest));
  EXPECT_FALSE(contains(out, next));
}

TEST(Scheduler, PreemptsLatestArrivalWhenBlocksRunOut) {
  // 6 blocks of 4 tokens; three 8-token prompts fill them at the first step.
  Sim sim(config(3, 1000), 6, 4, false);
  Sequence* a = sim.add(8, 4);
  Sequence* b = sim.add(8, 4);
  Sequence* c = sim.add(8, 4);
  Sequence* d = sim.add(4, 2);  // waits: max_num_seqs
  SchedulerOutput out = sim.step();
  ASSERT_EQ(out.scheduled.size(), 3u);
  EXPECT_EQ(sim.blocks.num_free_blocks(), 0);

  // Every decode now needs a new block: c (the latest running arrival) goes.
  out = sim.step();
  ASSERT_EQ(out.preempted.size(), 1u);
  EXPECT_EQ(out.preempted[0], c);
  EXPECT_FALSE(contains(out, c));
  EXPECT_FALSE(contains(out, d));  // no admissions in a step that preempted
  EXPECT_EQ(c->status, SeqStatus::kWaiting);
  EXPECT_EQ(c->num_computed, 0);
  EXPECT_TRUE(c->blocks.blocks.empty());
  EXPECT_EQ(c->num_generated(), 1);  // keeps its output, to be recomputed
  EXPECT_EQ(c->num_preemptions, 1);
  EXPECT_EQ(sim.sched.num_preemptions(), 1u);
  EXPECT_EQ(sim.sched.num_waiting(), 2u);

  // c resumes before d, which arrived later: in an earlier step, or earlier
  // in the same one.
  auto position = [](const SchedulerOutput& o, const Sequence* s) {
    for (size_t i = 0; i < o.scheduled.size(); ++i)
      if (o.scheduled[i].seq == s) return int(i);
    return -1;
  };
  int c_back = -1, d_back = -1;
  for (int i = 0; i < 100 && !sim.all_finished(); ++i) {
    out = sim.step();
    if (c_back < 0 && contains(out, c)) c_back = i * 16 + position(out, c);
    if (d_back < 0 && contains(out, d)) d_back = i * 16 + position(out, d);
  }
  ASSERT_TRUE(sim.all_finished());
  EXPECT_LE(c_back, d_back);
  EXPECT_EQ(a->num_generated(), 4);
  EXPECT_EQ(b->num_generated(), 4);
  EXPECT_EQ(c->num_generated(), 4);
  EXPECT_EQ(d->num_generated(), 2);
  EXPECT_EQ(sim.blocks.num_free_blocks(), 6);
}

TEST(Scheduler, SequencePreemptsItselfWhenItIsTheLowest) {
  // One sequence alone cannot grow: it is its own victim and waits.
  Sim sim(config(4, 1000), 2, 4, false);
  Sequence* a = sim.add(8, 4);
  sim.step();
  SchedulerOutput out = sim.step();
  EXPECT_TRUE(out.scheduled.empty());
  ASSERT_EQ(out.preempted.size(), 1u);
  EXPECT_EQ(out.preempted[0], a);
  EXPECT_EQ(a->status, SeqStatus::kWaiting);
  EXPECT_EQ(sim.blocks.num_free_blocks(), 2);
  sim.sched.finish(a);
  EXPECT_EQ(sim.sched.num_waiting(), 0u);
}

TEST(Scheduler, PriorityPolicyOrdersAdmission) {
  Sim sim(config(1, 1000, true), 64, 4, false);
  Sequence* low = sim.add(4, 1, /*priority=*/5);
  Sequence* high = sim.add(4, 1, /*priority=*/0);
  Sequence* mid = sim.add(4, 1, /*priority=*/2);
  EXPECT_TRUE(contains(sim.step(), high));
  EXPECT_TRUE(contains(sim.step(), mid));
  EXPECT_TRUE(contains(sim.step(), low));
  EXPECT_TRUE(sim.all_finished());
}

TEST(Scheduler, PriorityPolicyPreemptsLowestPriority) {
  Sim sim(config(2, 1000, true), 4, 4, false);
  Sequence* early_low = sim.add(8, 4, /*priority=*/1);
  Sequence* late_high = sim.add(8, 4, /*priority=*/0);
  sim.step();
  SchedulerOutput out = sim.step();
  ASSERT_EQ(out.preempted.size(), 1u);
  EXPECT_EQ(out.preempted[0], early_low);
  EXPECT_TRUE(contains(out, late_high));
  while (!sim.all_finished()) sim.step();
  EXPECT_EQ(early_low->num_generated(), 4);
  EXPECT_EQ(sim.blocks.num_free_blocks(), 4);
}

TEST(Scheduler, PrefixCacheAdmissionSkipsCachedTokens) {
  Sim sim(config(8, 1000), 64, 4, true);
  sim.add(12, 1);  // computes and caches 3 full blocks
  sim.step();
  ASSERT_TRUE(sim.all_finished());

  // Same 12 tokens: the block holding the last one is never matched.
  Sequence* same = sim.add(12, 1);
  // A longer prompt can use all three.
  Sequence* longer = sim.add(15, 1);
  SchedulerOutput out = sim.step();
  ASSERT_EQ(out.scheduled.size(), 2u);
  EXPECT_EQ(out.scheduled[0].seq, same);
  EXPECT_EQ(out.scheduled[0].num_new_tokens, 4);
  EXPECT_TRUE(out.scheduled[0].sample);
  EXPECT_EQ(out.scheduled[1].seq, longer);
  EXPECT_EQ(out.scheduled[1].num_new_tokens, 3);
  EXPECT_TRUE(out.block_copies.empty());
  EXPECT_EQ(sim.blocks.prefix_stats().hits, 8u + 12u);
  EXPECT_EQ(sim.blocks.prefix_stats().queries, 12u + 12u + 15u);
  EXPECT_TRUE(sim.all_finished());
  EXPECT_EQ(sim.blocks.num_free_blocks(), 64);
}

TEST(Scheduler, PrefixMatchIsUndoneWhenAdmissionFails) {
  Sim sim(config(8, 1000), 4, 4, true);
  sim.add(9, 1);  // 3 blocks, 2 cached
  sim.step();
  Sequence* hog = sim.add(4, 100, 0, 500);  // different tokens: takes a free block
  sim.step();
  // Matches the 2 cached blocks but needs 2 more; the hog's decode took the
  // last plain one, so it is not admitted and gives the matched blocks back.
  Sequence* seq = sim.add(13, 1);
  SchedulerOutput out = sim.step();
  EXPECT_FALSE(contains(out, seq));
  EXPECT_EQ(seq->num_computed, 0);
  EXPECT_TRUE(seq->blocks.blocks.empty());
  EXPECT_EQ(sim.blocks.num_used_blocks(), int(hog->blocks.blocks.size()));
  sim.sched.finish(hog);
  while (!sim.all_finished()) sim.step();
  EXPECT_EQ(sim.blocks.num_free_blocks(), 4);
}

TEST(Scheduler, ForkSharesBlocksCopyOnWrite) {
  Sim sim(config(8, 1000), 16, 4, false);
  Sequence* parent = sim.add(10, 3);
  SchedulerOutput out = sim.sched.schedule();
  sim.sched.update(out);

  // The engine forks after the prefill and samples a different first token for each.
  Sequence child;
  child.id = 99;
  child.arrival = parent->arrival;
  child.tokens = parent->tokens;
  child.prompt_len = parent->prompt_len;
  sim.sched.fork(*parent, &child);
  EXPECT_EQ(child.status, SeqStatus::kRunning);
  EXPECT_EQ(child.num_computed, 10);
  EXPECT_EQ(child.blocks.blocks, parent->blocks.blocks);
  EXPECT_EQ(sim.sched.num_running(), 2u);
  parent->tokens.push_back(1);
  child.tokens.push_back(2);

  out = sim.sched.schedule();
  ASSERT_EQ(out.scheduled.size(), 2u);
  // The shared partial block is copied for the first writer only.
  ASSERT_EQ(out.block_copies.size(), 1u);
  EXPECT_NE(parent->blocks.blocks[2], child.blocks.blocks[2]);
  EXPECT_EQ(parent->blocks.blocks[0], child.blocks.blocks[0]);
  EXPECT_EQ(parent->blocks.blocks[1], child.blocks.blocks[1]);
  sim.sched.update(out);
  sim.sched.finish(parent);
  sim.sched.finish(&child);
  EXPECT_EQ(sim.blocks.num_free_blocks(), 16);
}

TEST(Scheduler, RandomWorkloadCompletesWithoutLeaks) {
  for (bool caching : {false, true}) {
    Sim sim(config(6, 48), 24, 4, caching);
    std::mt19937 rng(7);
    for (int i = 0; i < 40; ++i) {
      // A few shared prefixes so the cache matters.
      sim.add(1 + int(rng() % 30), 1 + int(rng() % 12), 0, int32_t(rng() % 3) * 1000);
    }
    int steps = 0;
    while (!sim.all_finished()) {
      ASSERT_LT(++steps, 5000);
      sim.step();
    }
    EXPECT_EQ(sim.blocks.num_free_blocks(), 24);
    EXPECT_GT(sim.sched.num_preemptions(), 0u);
    if (caching) {
      EXPECT_GT(sim.blocks.prefix_stats().hits, 0u);
    }
  }
}

}  // namespace
}  // namespace tidal
