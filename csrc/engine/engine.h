// The synchronous engine: requests in, one scheduled+executed+sampled step
// at a time, outputs out. `tidal generate` and the tests drive it directly,
// and AsyncEngine runs it on a dedicated loop thread for the server.
//
// With data parallelism it holds several replicas, each with its own
// executor, scheduler and KV pool; a new request goes to the replica with
// the least outstanding work, and a step runs every replica's forward pass
// at once (one thread per replica), so replicas advance in lockstep.
//
// A replica whose executor throws is down for good: a parallel executor
// never resynchronizes its ranks, and the failed step may have left its KV
// cache half written. Its requests end at once with `error` set; the other
// replicas go on with theirs and take every new request. With no replica
// left, add_request refuses. A new engine (a reconfiguration switch, a
// restart) is what brings replicas back.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/executor.h"
#include "engine/request.h"
#include "kv/block_manager.h"
#include "kv/kv_cache.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "scheduler/scheduler.h"

namespace tidal {

class ReplicaThreads;
class RequestState;

// A request taken out of one engine to go on in another of the same model
// (live reconfiguration): its prompt and sampling parameters, every
// choice's tokens so far, seed, detokenizer and stop-string state, and its
// usage and timing. Its KV blocks stay behind (they are freed on release);
// the adopting engine recomputes prompt plus generated tokens, as after a
// preemption, and counter-based sampling continues the same streams.
class MovedRequest {
 public:
  MovedRequest(std::unique_ptr<RequestState> state, const Tokenizer* tokenizer);
  MovedRequest(MovedRequest&&) noexcept;
  MovedRequest& operator=(MovedRequest&&) noexcept;
  ~MovedRequest();

  const std::string& id() const;
  // Tokens the adopting engine runs through the model again: prompt plus
  // generated tokens of every unfinished choice (before prefix-cache hits).
  int64_t tokens_to_recompute() const;

 private:
  friend class LLMEngine;
  std::unique_ptr<RequestState> state_;
  const Tokenizer* tokenizer_;  // whose detokenizer state the choices hold
};

struct EngineConfig {
  int block_size = 16;
  int num_kv_blocks = 0;            // 0: derive from kv_cache_bytes
  size_t kv_cache_bytes = size_t(1) << 30;
  // Element type of the KV cache: F32 (the reference) or F16, which halves
  // the bytes per token (twice the blocks in kv_cache_bytes) and rounds K
  // and V to half precision as they are written.
  DType kv_cache_dtype = DType::F32;
  bool enable_prefix_caching = true;
  SchedulerConfig scheduler;        // max_model_len 0 => the model's context length
  uint64_t default_seed = 0;        // stream for requests without a seed
};

struct EngineStats {
  size_t num_running = 0;
  size_t num_waiting = 0;
  int num_blocks = 0;
  int num_used_blocks = 0;
  double kv_usage = 0.0;            // used / total blocks
  int block_size = 0;               // tokens per KV block
  DType kv_cache_dtype = DType::F32;
  size_t kv_bytes_per_token = 0;    // K and V of one token on the device holding the most
  PrefixCacheStats prefix;
  uint64_t num_preemptions = 0;
  uint64_t prompt_tokens = 0;       // prompt tokens computed (not cached)
  uint64_t generation_tokens = 0;
  uint64_t steps = 0;
  // Replicas these stats cover (1 for one replica's own; 0 for one gone
  // since, see stats_carry.h) and how many of them serve: a replica is down
  // once its executor failed, and `failure` then says why.
  int num_replicas = 0;
  int replicas_up = 0;
  std::string failure;
  // Per data-parallel replica (empty with one replica); the fields above
  // are the totals (kv_usage: used over total blocks of all replicas).
  std::vector<EngineStats> replicas;
};

class LLMEngine {
 public:
  // One device. The model, tokenizer and backend must outlive the engine.
  LLMEngine(const Model& model, const Tokenizer& tokenizer, Backend& backend, const EngineConfig& config);
  // One replica per executor (parallel/deployment.h builds them for
  // --tp/--pp/--dp). config.kv_cache_bytes is per device.
  LLMEngine(const ModelConfig& model, const Tokenizer& tokenizer, std::vector<std::unique_ptr<Executor>> replicas,
            const EngineConfig& config);
  ~LLMEngine();

  // Validates and queues a request. Throws Error(kInvalidArgument) for an
  // empty prompt, a prompt longer than the context, ids out of vocabulary, or
  // an impossible n/max_tokens; Error(kInternal) when every replica is down.
  void add_request(Request request);
  // The checks add_request makes, without queuing (safe from any thread).
  void validate(const Request& request) const;
  // Ends a request early; its blocks are freed now. Returns the request's
  // final output (every open choice finished with kAbort), or nothing for an
  // unknown id.
  std::optional<RequestOutput> abort_request(const std::string& id);
  // Takes every unfinished request out, in arrival order, freeing its KV
  // blocks; the engine is then empty. For a switch of configuration.
  std::vector<MovedRequest> release_requests();
  // Continues requests released by another engine that shares this one's
  // tokenizer (same model, any weights or layout). Each goes to a replica
  // and waits to recompute what it had computed; arrival order is kept
  // ahead of requests added later. Takes them all (`moved` is left empty),
  // or throws Error and takes none when one does not fit this engine's
  // context or comes from another tokenizer, or when every replica is down.
  void adopt_requests(std::vector<MovedRequest>& moved);
  // Retunes every replica's scheduler in place (a knob-only switch: the
  // executors, the KV pool and every request stay as they are).
  void set_scheduler_limits(int max_num_seqs, int max_num_batched_tokens, double target_step_seconds);
  // Runs one scheduling step and the forward pass; returns what changed.
  // An executor that throws takes its replica down (see above) instead of
  // failing the step: the step returns that replica's requests as failed.
  std::vector<RequestOutput> step();
  bool has_unfinished() const { return !requests_.empty(); }
  EngineStats stats() const;

  const Tokenizer& tokenizer() const { return tokenizer_; }
  const ModelConfig& model_config() const { return config_; }
  int max_model_len() const { return scheduler_config_.max_model_len; }
  size_t num_replicas() const { return replicas_.size(); }

 private:
  struct Replica;

  // Samples the replica's logits and turns them into outputs.
  void process(Replica& replica, const SchedulerOutput& sched, std::vector<float>& logits,
               std::vector<RequestOutput>& outputs, std::unordered_map<RequestState*, size_t>& output_of);
  // The replica a new request goes to; nothing when every one is down.
  std::optional<size_t> choose_replica() const;
  // Marks a replica down and ends each of its requests with `reason` as the
  // error, appending their final outputs.
  void fail_replica(size_t index, const std::string& reason, std::vector<RequestOutput>& outputs);
  // Ends a request: frees its open choices' blocks and forgets it. Returns
  // its final output (those choices finished with kAbort).
  RequestOutput end_request(RequestState& state);
  // Ends every open choice of `state` with kAbort (deltas into `out`) and
  // frees its blocks, leaving the request known until the step is over.
  void end_open_choices(RequestState& state, RequestOutput& out);
  static EngineStats replica_stats(const Replica& replica);

  ModelConfig config_;
  const Tokenizer& tokenizer_;
  SchedulerConfig scheduler_config_;
  uint64_t default_seed_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::unique_ptr<ReplicaThreads> threads_;  // only with more than one replica
  std::unordered_map<std::string, std::unique_ptr<RequestState>> requests_;
  std::unordered_map<int64_t, RequestState*> owner_of_seq_;
  int64_t next_seq_id_ = 0;
  uint64_t steps_ = 0;
};

}  // namespace tidal
