#include "scheduler/scheduler.h"

#include <algorithm>

namespace tidal {

namespace {

// Orders sequences from most to least deserving of running. `running_` is kept
// in this order so its back is always the preemption victim.
struct RunsBefore {
  bool by_priority;
  bool operator()(const Sequence* a, const Sequence* b) const {
    if (by_priority && a->priority != b->priority) return a->priority < b->priority;
    return a->arrival < b->arrival;
  }
};

template <typename Container>
void insert_sorted(Container& c, Sequence* seq, RunsBefore before) {
  c.insert(std::upper_bound(c.begin(), c.end(), seq, before), seq);
}

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config, BlockManager& blocks) : config_(config), blocks_(blocks) {}

void Scheduler::add(Sequence* seq) {
  seq->status = SeqStatus::kWaiting;
  if (config_.priority_policy) {
    insert_sorted(waiting_, seq, RunsBefore{true});
  } else {
    waiting_.push_back(seq);
  }
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  int budget = config_.max_num_batched_tokens;
  const RunsBefore before{config_.priority_policy};

  // Running sequences first (decodes and unfinished prefill chunks), so work
  // already holding blocks finishes before new work takes more.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* seq = running_[i];
    const int n = std::min(seq->num_uncomputed(), budget);
    if (n <= 0) continue;
    bool fits = true;
    while (!blocks_.allocate_slots(&seq->blocks, seq->num_computed, n, &out.block_copies)) {
      // The back is the least deserving and never one scheduled earlier in
      // this loop (those sit before index i).
      Sequence* victim = running_.back();
      preempt(victim);
      out.preempted.push_back(victim);
      if (victim == seq) {
        fits = false;
        break;
      }
    }
    if (!fits) break;
    out.scheduled.push_back({seq, n, seq->num_computed + n == int(seq->tokens.size())});
    budget -= n;
  }

  // Admitting new work right after preempting would just thrash the pool.
  if (out.preempted.empty()) {
    while (!waiting_.empty() && running_.size() < size_t(config_.max_num_seqs) && budget > 0) {
      Sequence* seq = waiting_.front();
      if (seq->num_computed == 0 && seq->blocks.blocks.empty()) {
        // Never match the block holding the last token: at least one token must
        // run to produce logits, and a cached block must never be written.
        const int max_blocks = (int(seq->tokens.size()) - 1) / blocks_.block_size();
        seq->num_computed = blocks_.match_prefix(seq->tokens, max_blocks, &seq->blocks);
      }
      const int n = std::min(seq->num_uncomputed(), budget);
      if (!blocks_.allocate_slots(&seq->blocks, seq->num_computed, n, &out.block_copies)) {
        // Waiting sequences hold no blocks but the prefix hits taken above.
        blocks_.free(&seq->blocks);
        seq->num_computed = 0;
        break;
      }
      waiting_.pop_front();
      seq->status = SeqStatus::kRunning;
      insert_sorted(running_, seq, before);
      out.scheduled.push_back({seq, n, seq->num_computed + n == int(seq->tokens.size())});
      budget -= n;
    }
  }

  out.num_batched_tokens = config_.max_num_batched_tokens - budget;
  return out;
}

void Scheduler::update(const SchedulerOutput& out) {
  for (const ScheduledSeq& s : out.scheduled) {
    s.seq->num_computed += s.num_new_tokens;
    blocks_.cache_full_blocks(&s.seq->blocks, s.seq->tokens, s.seq->num_computed);
  }
}

void Scheduler::fork(const Sequence& parent, Sequence* child) {
  blocks_.fork(parent.blocks, &child->blocks);
  child->num_computed = parent.num_computed;
  child->status = SeqStatus::kRunning;
  insert_sorted(running_, child, RunsBefore{config_.priority_policy});
}

void Scheduler::finish(Sequence* seq) {
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) {
    running_.erase(it);
  } else if (auto wt = std::find(waiting_.begin(), waiting_.end(), seq); wt != waiting_.end()) {
    waiting_.erase(wt);
  }
  blocks_.free(&seq->blocks);
  seq->status = SeqStatus::kFinished;
}

// Recompute-style preemption: the K/V is dropped and rebuilt on resume (the
// prefix cache usually covers most of it). Generated tokens are kept.
void Scheduler::preempt(Sequence* seq) {
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  blocks_.free(&seq->blocks);
  seq->num_computed = 0;
  seq->status = SeqStatus::kWaiting;
  ++seq->num_preemptions;
  ++num_preemptions_;
  if (config_.priority_policy) {
    insert_sorted(waiting_, seq, RunsBefore{true});
  } else {
    waiting_.push_front(seq);
  }
}

}  // namespace tidal
