// Continuous batching in the style of vLLM's v1 scheduler: every step gives
// each sequence a number of tokens to compute (a prefill chunk or one decode
// token) within a token budget. Running sequences go first; waiting ones are
// admitted while blocks and budget last. When a running sequence cannot get a
// block, the lowest-priority running sequence is preempted: its blocks are
// freed and it goes back to the front of the queue to be recomputed later.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "kv/block_manager.h"
#include "scheduler/sequence.h"
#include "scheduler/step_cost_model.h"

namespace tidal {

struct SchedulerConfig {
  int max_num_seqs = 64;              // sequences per step
  int max_num_batched_tokens = 2048;  // tokens per step (prefill chunks + decodes)
  int max_model_len = 0;              // prompt + output limit per sequence (0: the model's context)
  bool priority_policy = false;       // order waiting queue by (priority, arrival) instead of FCFS
  // Time-per-output-token target (0: none). Only as many sequences run as
  // one step can decode within this time, and while any sequence decodes a
  // step takes only as many tokens as fit in it (per the step cost model),
  // decodes first: prefill chunks and new admissions get the rest.
  // Throughput is traded for a bounded TPOT; first-token latency grows.
  // A target that even a single decode misses is replaced by twice that
  // decode's time (see step_limit_seconds).
  double target_step_seconds = 0.0;
};

struct ScheduledSeq {
  Sequence* seq;
  int num_new_tokens;  // tokens [num_computed, num_computed + num_new_tokens) run this step
  bool sample;         // this chunk reaches the end of the sequence: a token is sampled
};

struct SchedulerOutput {
  std::vector<ScheduledSeq> scheduled;
  std::vector<BlockCopy> block_copies;  // copy-on-write, to perform before the forward
  std::vector<Sequence*> preempted;     // moved back to waiting this step
  int num_batched_tokens = 0;
  bool empty() const { return scheduled.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockManager& blocks);

  void add(Sequence* seq);                 // enters the waiting queue
  SchedulerOutput schedule();
  // After the forward: advances num_computed of every scheduled sequence and
  // registers newly full blocks in the prefix cache.
  void update(const SchedulerOutput& out);
  // How long the forward of a step with `n_tokens` tokens took (feeds the
  // step cost model behind target_step_seconds).
  void observe_step(int n_tokens, double seconds) { cost_.observe(n_tokens, seconds); }
  // Puts `child` (a fork of running `parent`, same tokens) into running,
  // sharing the parent's blocks copy-on-write; the parent has one fork less
  // to come.
  void fork(Sequence& parent, Sequence* child);
  // Removes a sequence (finished or aborted) and frees its blocks.
  void finish(Sequence* seq);

  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }
  uint64_t num_preemptions() const { return num_preemptions_; }
  const SchedulerConfig& config() const { return config_; }
  // New batch limits and TPOT target from the next schedule() on (live
  // reconfiguration). Sequences already running keep running; fewer
  // max_num_seqs only holds back admissions until the count drops. The
  // step cost model keeps what it has learned.
  void set_limits(int max_num_seqs, int max_num_batched_tokens, double target_step_seconds);

 private:
  void preempt(Sequence* seq);
  int decode_capacity() const;
  double step_limit_seconds() const;  // the target, or what replaces it when no step can meet it
  int step_token_budget(int num_decoding) const;

  SchedulerConfig config_;
  BlockManager& blocks_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;
  uint64_t num_preemptions_ = 0;
  StepCostModel cost_;
};

}  // namespace tidal
