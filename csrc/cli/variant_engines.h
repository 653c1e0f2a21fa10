// The engines of `tidal serve --variants`: the base model's and one per
// variant derived from it, each with its own scheduler and KV pool (of
// --kv-cache-mb), all sharing one tokenizer and one CPU thread pool, on
// which they take turns step by step (cli/pool_turns.h).
#pragma once

#include <memory>
#include <vector>

#include "cli/model_options.h"
#include "cli/pool_turns.h"
#include "engine/engine.h"
#include "model/variant.h"

namespace tidal {

// Members are destroyed engine first, weights last.
struct VariantEngine {
  VariantSpec spec;
  std::unique_ptr<Model> model;      // the derived weights, owned here
  std::unique_ptr<Backend> backend;  // its own: a backend's scratch serves one caller at a time
  std::unique_ptr<LLMEngine> engine;
};

// Members are destroyed variants first, the base model and pool last.
struct VariantSetup {
  LoadedModel loaded;  // base model, shared tokenizer and pool, the base's backend
  std::unique_ptr<PoolTurns> turns;
  std::unique_ptr<LLMEngine> base_engine;
  std::vector<VariantEngine> variants;  // in the order listed
};

// Loads the base model (as `tidal serve` without variants does), derives
// each variant from it and builds every engine. Single device only.
VariantSetup start_variant_engines(const ModelOptions& options, const std::vector<VariantSpec>& specs);

}  // namespace tidal
