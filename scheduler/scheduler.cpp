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

// Past its prompt, with only the newest token left to run: one token a step.
bool is_decoding(const Sequence* seq) { return seq->num_generated() > 0 && seq->num_uncomputed() == 1; }

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config, BlockManager& blocks) : config_(config), blocks_(blocks) {}

void Scheduler::set_limits(int max_num_seqs, int max_num_batched_tokens, double target_step_seconds) {
  config_.max_num_seqs = max_num_seqs;
  config_.max_num_batched_tokens = max_num_batched_tokens;
  config_.target_step_seconds = target_step_seconds;
}

void Scheduler::add(Sequence* seq) {
  seq->status = SeqStatus::kWaiting;
  if (config_.priority_policy) {
    insert_sorted(waiting_, seq, RunsBefore{true});
  } else {
    waiting_.push_back(seq);
  }
}

int Scheduler::decode_capacity() const {
  if (config_.target_step_seconds <= 0.0) return config_.max_num_seqs;
  // The cost model needs steps of different sizes to tell the fixed cost
  // from the per-token one; until then one sequence at a time is safe, and
  // its prefill and decode steps are just the two sizes the model needs.
  if (!cost_.ready()) return 1;
  return std::min(config_.max_num_seqs, cost_.max_tokens_within(step_limit_seconds()));
}

double Scheduler::step_limit_seconds() const {
  // When one decode alone already misses the target (a slower or shared
  // machine), running one sequence at a time cannot meet it either: it
  // only starves the queue while every running stream still misses. The
  // batch may then grow until a step costs twice a single decode, so the
  // engine keeps its throughput and TPOT stays within 2x of the best the
  // machine can do.
  const double single = cost_.predict_seconds(1);
  return single > config_.target_step_seconds ? 2.0 * single : config_.target_step_seconds;
}

int Scheduler::step_token_budget(int num_decoding) const {
  const int budget = config_.max_num_batched_tokens;
  // Before anything decodes only first-token latency is at stake.
  if (config_.target_step_seconds <= 0.0 || num_decoding == 0) return budget;
  const int fits = cost_.ready() ? cost_.max_tokens_within(step_limit_seconds()) : 2 * num_decoding;
  return std::min(budget, std::max(fits, num_decoding));
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  const RunsBefore before{config_.priority_policy};
  int decoding_left = int(std::count_if(running_.begin(), running_.end(), is_decoding));
  const int step_budget = step_token_budget(decoding_left);
  int budget = step_budget;
  // With a TPOT target, a prefill chunk must leave one token for each decode
  // behind it in the running order, or that decode would skip a step.
  const bool reserve_decodes = config_.target_step_seconds > 0.0;

  // Running sequences first (decodes and unfinished prefill chunks), so work
  // already holding blocks finishes before new work takes more.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* seq = running_[i];
    const bool decoding = is_decoding(seq);
    if (decoding) --decoding_left;
    const int n = std::min(seq->num_uncomputed(), budget - (reserve_decodes && !decoding ? decoding_left : 0));
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
    // Every admitted sequence becomes a decode in every later step, so with
    // a TPOT target only as many run as the target has room for.
    const size_t max_running = size_t(decode_capacity());
    // Forks a running sequence has still to make hold their seats already.
    size_t seats = running_.size();
    for (const Sequence* seq : running_) seats += size_t(seq->forks_to_come);
    while (!waiting_.empty() && budget > 0) {
      Sequence* seq = waiting_.front();
      // A request wider than the limit still runs, alone.
      const size_t needs = 1 + size_t(seq->forks_to_come);
      if (!running_.empty() && seats + needs > max_running) break;
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
      seats += needs;
      insert_sorted(running_, seq, before);
      out.scheduled.push_back({seq, n, seq->num_computed + n == int(seq->tokens.size())});
      budget -= n;
    }
  }

  out.num_batched_tokens = step_budget - budget;
  return out;
}

void Scheduler::update(const SchedulerOutput& out) {
  for (const ScheduledSeq& s : out.scheduled) {
    s.seq->num_computed += s.num_new_tokens;
    blocks_.cache_full_blocks(&s.seq->blocks, s.seq->tokens, s.seq->num_computed);
  }
}

void Scheduler::fork(Sequence& parent, Sequence* child) {
  if (parent.forks_to_come > 0) --parent.forks_to_come;
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
