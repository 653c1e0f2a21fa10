// Command-line options shared by every subcommand that loads a model, and
// the bundle of objects they produce (model, tokenizer, thread pool, backend),
// plus the --tp/--pp/--dp/--comm options of the commands that run the engine.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "core/thread_pool.h"
#include "engine/engine.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "engine/pool_turns.h"
#include "parallel/mpi_world.h"
#include "reconfig/config_runtime.h"
#include "parallel/parallel_config.h"

namespace tidal {

struct ModelOptions {
  std::string model;
  std::string tokenizer;        // default: next to the model, or the GGUF's own vocabulary
  int threads = 0;              // 0: all hardware threads
  bool f32 = false;             // dequantize weights to F32 at load
  int kv_cache_mb = 1024;
  std::string kv_cache_dtype = "f32";  // f32 | f16
  int block_size = 16;
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  double target_tpot_ms = 0;    // 0: no time-per-output-token target
  int max_model_len = 0;        // 0: the model's context length
  bool no_prefix_caching = false;
  std::string policy = "fcfs";  // fcfs | priority
};

void add_model_options(CLI::App& app, ModelOptions& options);

struct LoadedModel {
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Backend> backend;  // load_for_serving only: configurations build their own
  EngineConfig engine_config;
  std::string chat_template;    // GGUF tokenizer.chat_template; empty when the model has none
};

// The model, tokenizer and engine settings, without a pool or a device.
// Throws tidal::Error with a one-line message for missing or corrupt files.
LoadedModel load_model_files(const ModelOptions& options);
// The same, with a thread pool of --threads and a CPU backend on it.
LoadedModel load_for_serving(const ModelOptions& options);

void add_parallel_options(CLI::App& app, ParallelConfig& parallel);


// What a command that serves a model holds before it builds a
// configuration: the MPI job (--comm mpi|nccl), the loaded files, the
// shared CPU pool and its turns. Members are destroyed MPI job last.
struct ModelSetup {
  std::unique_ptr<MpiWorld> world;
  LoadedModel loaded;
  std::unique_ptr<PoolTurns> turns;
  // Derived variants, shared by the configurations that serve them and by
  // the reconfigurator's shadow monitoring (the driver only).
  std::unique_ptr<VariantStore> variants;
  // An MPI worker process has followed the driver's orders until it quit:
  // the command has nothing more to do.
  bool worker_done = false;

  ModelSource source(int threads);
};

// Loads the model (every MPI process does); an MPI worker process then
// serves the driver's orders before returning (worker_done).
ModelSetup setup_model(const ModelOptions& options, const ParallelConfig& parallel);

// The configuration the flags describe, with `variant` and `layout`.
ServedConfig flag_config(const ModelOptions& options, const std::string& variant, const ParallelConfig& layout);

// What `tidal generate` runs: one configuration built from the flags.
// Members are destroyed engine first, model and the MPI job last.
struct EngineSetup {
  ModelSetup model;
  std::unique_ptr<ConfigRuntime> runtime;  // null on an MPI worker process
  LLMEngine* engine = nullptr;
};

EngineSetup start_engine(const ModelOptions& options, const ParallelConfig& parallel);

}  // namespace tidal
