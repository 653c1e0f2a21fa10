// The synchronous engine: requests in, one scheduled+executed+sampled step
// at a time, outputs out. No threads of its own beyond the backend's pool;
// `tidal generate` and the tests drive it directly, and AsyncEngine runs it
// on a dedicated loop thread for the server.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/request.h"
#include "kv/block_manager.h"
#include "kv/kv_cache.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "scheduler/scheduler.h"

namespace tidal {

class ModelRunner;
class RequestState;

struct EngineConfig {
  int block_size = 16;
  int num_kv_blocks = 0;            // 0: derive from kv_cache_bytes
  size_t kv_cache_bytes = size_t(1) << 30;
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
  PrefixCacheStats prefix;
  uint64_t num_preemptions = 0;
  uint64_t prompt_tokens = 0;       // prompt tokens computed (not cached)
  uint64_t generation_tokens = 0;
  uint64_t steps = 0;
};

class LLMEngine {
 public:
  // The model, tokenizer and backend must outlive the engine.
  LLMEngine(const Model& model, const Tokenizer& tokenizer, Backend& backend, const EngineConfig& config);
  ~LLMEngine();

  // Validates and queues a request. Throws Error(kInvalidArgument) for an
  // empty prompt, a prompt longer than the context, ids out of vocabulary, or
  // an impossible n/max_tokens.
  void add_request(Request request);
  // The checks add_request makes, without queuing (safe from any thread).
  void validate(const Request& request) const;
  // Ends a request early; its blocks are freed now. Returns the request's
  // final output (every open choice finished with kAbort), or nothing for an
  // unknown id.
  std::optional<RequestOutput> abort_request(const std::string& id);
  // Runs one scheduling step and the forward pass; returns what changed.
  std::vector<RequestOutput> step();
  bool has_unfinished() const { return !requests_.empty(); }
  EngineStats stats() const;

  const Tokenizer& tokenizer() const { return tokenizer_; }
  const ModelConfig& model_config() const { return model_.config; }
  int max_model_len() const { return scheduler_config_.max_model_len; }

 private:
  const Model& model_;
  const Tokenizer& tokenizer_;
  SchedulerConfig scheduler_config_;
  uint64_t default_seed_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ModelRunner> runner_;
  std::unordered_map<std::string, std::unique_ptr<RequestState>> requests_;
  std::unordered_map<int64_t, RequestState*> owner_of_seq_;
  int64_t next_seq_id_ = 0;
  uint64_t prompt_tokens_ = 0, generation_tokens_ = 0, steps_ = 0;
};

}  // namespace tidal
