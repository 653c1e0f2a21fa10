#include "reconfig/config_runtime.h"

#include <algorithm>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "engine/model_runner.h"
#include "kv/kv_cache.h"
#include "model/variant.h"

namespace tidal {

namespace {

VariantSpec variant_spec(const std::string& name) {
  const std::optional<VariantSpec> spec = parse_variant(name);
  if (!spec) throw Error(ErrorCode::kInvalidArgument, "unknown variant '" + name + "'");
  return *spec;
}

EngineConfig engine_config(const ModelSource& source, const ServedConfig& c) {
  EngineConfig e = source.engine;
  e.scheduler.max_num_seqs = c.max_num_seqs;
  e.scheduler.max_num_batched_tokens = c.max_num_batched_tokens;
  e.scheduler.target_step_seconds = c.target_tpot_ms / 1000.0;
  return e;
}

int devices_per_replica(const ServedConfig& c) { return c.layout.tp * c.layout.pp; }

}  // namespace

ConfigRuntime::ConfigRuntime(const ModelSource& source, const ServedConfig& config) {
  check_config_values(config);
  ParallelConfig layout = config.layout;
  // One rank per replica needs no communicator: the driver runs it alone
  // (over MPI, the other processes stay idle).
  if (layout.ranks_per_replica() == 1) layout.comm = "local";
  const bool over_mpi = layout.comm != "local";
  if (over_mpi) {
    if (!source.world) throw Error(ErrorCode::kInvalidArgument, "--comm " + layout.comm + " needs mpirun");
    // The workers derive their weights while this process derives its own.
    source.world->announce({config.variant, layout});
  }
  const Model* model = &source.base;
  std::string error;
  try {
    if (config.variant != kBaseVariant) {
      derived_ = source.variants ? source.variants->get(config.variant)
                                 : std::make_shared<const Model>(derive_variant(source.base, variant_spec(config.variant)));
      model = derived_.get();
      weight_bytes_ = model_weight_bytes(*model);  // shards view into these (but for a few copied slices)
    }
    if (!layout.single_device()) check_parallel_config(*model, layout);
  } catch (const std::exception& e) {
    if (!over_mpi) throw;
    error = e.what();
  }
  // Every process gives up together, or builds together.
  if (over_mpi) source.world->ready(error);
  storage_ = describe_storage(*model);
  served_weight_bytes_ = model_weight_bytes(*model);
  const EngineConfig e = engine_config(source, config);
  if (layout.single_device()) {
    // The shared pool, with a backend of its own (a backend's scratch serves
    // one caller at a time), taking turns with every other engine on it.
    backend_ = std::make_unique<CpuBackend>(source.pool);
    std::vector<std::unique_ptr<Executor>> executors;
    executors.push_back(
        std::make_unique<TurnTakingExecutor>(std::make_unique<ModelRunner>(*model, *backend_), source.turns));
    engine_ = std::make_unique<LLMEngine>(model->config, source.tokenizer, std::move(executors), e);
  } else {
    deployment_ = std::make_unique<Deployment>(*model, layout, source.threads, source.world);
    engine_ = std::make_unique<LLMEngine>(model->config, source.tokenizer, deployment_->executors(), e);
  }
  const EngineStats s = engine_->stats();
  kv_bytes_ = size_t(s.num_blocks) * size_t(s.block_size) * s.kv_bytes_per_token * size_t(devices_per_replica(config));
}

ConfigRuntime::~ConfigRuntime() = default;

size_t ConfigRuntime::estimated_bytes(const ModelSource& source, const ServedConfig& c) {
  const size_t weights =
      c.variant == kBaseVariant ? 0 : variant_weight_bytes(source.base, variant_spec(c.variant));
  const ModelConfig& m = source.base.config;
  const size_t per_token = KvCacheShape{.n_layers = m.n_layers, .n_kv_heads = m.n_kv_heads, .head_dim = m.head_dim,
                                        .dtype = source.engine.kv_cache_dtype}
                               .bytes_per_token();
  // As LLMEngine sizes it: the budget per device, capped by what
  // max_num_seqs full contexts can use.
  const int64_t context = source.engine.scheduler.max_model_len > 0 ? source.engine.scheduler.max_model_len
                                                                    : m.max_seq_len;
  const int block = source.engine.block_size;
  const size_t useful = size_t(c.max_num_seqs) * size_t((context + block - 1) / block) * size_t(block) *
                        (per_token / size_t(devices_per_replica(c)) + 1);
  const size_t per_device = std::min(source.engine.kv_cache_bytes, useful);
  return weights + per_device * size_t(devices_per_replica(c)) * size_t(c.layout.dp);
}

}  // namespace tidal
