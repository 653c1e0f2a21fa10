#include "cli/variant_engines.h"

#include <chrono>
#include <cstdio>

#include "cpu/cpu_backend.h"
#include "engine/model_runner.h"

namespace tidal {

namespace {

std::unique_ptr<LLMEngine> make_engine(const Model& model, Backend& backend, const LoadedModel& loaded,
                                       PoolTurns& turns) {
  std::vector<std::unique_ptr<Executor>> executors;
  executors.push_back(std::make_unique<TurnTakingExecutor>(std::make_unique<ModelRunner>(model, backend), turns));
  return std::make_unique<LLMEngine>(model.config, *loaded.tokenizer, std::move(executors), loaded.engine_config);
}

}  // namespace

VariantSetup start_variant_engines(const ModelOptions& options, const std::vector<VariantSpec>& specs) {
  VariantSetup s;
  s.loaded = load_for_serving(options);
  s.turns = std::make_unique<PoolTurns>();
  const Model& base = *s.loaded.model;
  s.base_engine = make_engine(base, *s.loaded.backend, s.loaded, *s.turns);
  for (const VariantSpec& spec : specs) {
    const auto start = std::chrono::steady_clock::now();
    VariantEngine v;
    v.spec = spec;
    v.model = std::make_unique<Model>(derive_variant(base, spec));
    v.backend = std::make_unique<CpuBackend>(*s.loaded.pool);
    v.engine = make_engine(*v.model, *v.backend, s.loaded, *s.turns);
    std::fprintf(stderr, "tidal: variant %s: %.1f MiB of weights, derived in %.2f s\n", spec.name.c_str(),
                 double(model_weight_bytes(*v.model)) / double(1 << 20),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    s.variants.push_back(std::move(v));
  }
  return s;
}

}  // namespace tidal
