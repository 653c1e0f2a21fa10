// Everything that serves one configuration of a model: the variant's
// weights (derived from the base, or the base itself), the device or the
// deployment of ranks that runs them, and an LLMEngine with its scheduler
// and KV pool. Built whole, in the background, while another configuration
// serves; destroyed whole once its requests have moved on.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/thread_pool.h"
#include "engine/engine.h"
#include "engine/pool_turns.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "parallel/deployment.h"
#include "parallel/mpi_world.h"
#include "reconfig/served_config.h"
#include "reconfig/variant_store.h"

namespace tidal {

// What every configuration of one served model is built from; all of it
// outlives the configurations.
struct ModelSource {
  const Model& base;
  const Tokenizer& tokenizer;
  ThreadPool& pool;     // single-device configurations run on it, taking turns
  PoolTurns& turns;
  EngineConfig engine;  // KV pool budget (per device), block size, dtype, prefix caching, policy, seed
  int threads = 0;      // per rank of a deployment (0: the cores shared out)
  MpiWorld* world = nullptr;  // the MPI job, when served over --comm mpi|nccl (this is its driver)
  // Where derived variants are kept and shared (with shadow monitoring);
  // null: each configuration derives its own.
  VariantStore* variants = nullptr;
};

class ConfigRuntime {
 public:
  // Derives the weights, builds the executors (starting a deployment's
  // rank threads; over MPI, ordering every worker process to build its
  // part) and allocates the KV pool. Throws Error with the reason.
  ConfigRuntime(const ModelSource& source, const ServedConfig& config);
  ~ConfigRuntime();
  ConfigRuntime(const ConfigRuntime&) = delete;
  ConfigRuntime& operator=(const ConfigRuntime&) = delete;

  LLMEngine& engine() { return *engine_; }
  // What the served weights are stored as (describe_storage) and occupy
  // (model_weight_bytes).
  const std::string& storage() const { return storage_; }
  size_t weight_bytes() const { return served_weight_bytes_; }

  // Memory this configuration holds beyond the base model: derived weights
  // and KV pools.
  size_t resident_bytes() const { return weight_bytes_ + kv_bytes_; }
  // The same, before building: an upper bound from the variant's formats
  // and the pool budget of every device.
  static size_t estimated_bytes(const ModelSource& source, const ServedConfig& config);

 private:
  // Destroyed engine first (it stops the ranks), weights last.
  std::shared_ptr<const Model> derived_;  // null when serving the base as loaded
  std::unique_ptr<Backend> backend_;     // single device
  std::unique_ptr<Deployment> deployment_;
  std::unique_ptr<LLMEngine> engine_;
  std::string storage_;
  size_t served_weight_bytes_ = 0;
  size_t weight_bytes_ = 0;  // derived here (0 when serving the base)
  size_t kv_bytes_ = 0;
};

}  // namespace tidal
