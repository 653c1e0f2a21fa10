// Command-line options shared by every subcommand that loads a model, and
// the bundle of objects they produce (model, tokenizer, thread pool, backend).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "core/thread_pool.h"
#include "engine/engine.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace tidal {

struct ModelOptions {
  std::string model;
  std::string tokenizer;        // default: next to the model, or the GGUF's own vocabulary
  int threads = 0;              // 0: all hardware threads
  bool f32 = false;             // dequantize weights to F32 at load
  int kv_cache_mb = 1024;
  int block_size = 16;
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  int max_model_len = 0;        // 0: the model's context length
  bool no_prefix_caching = false;
  std::string policy = "fcfs";  // fcfs | priority
};

void add_model_options(CLI::App& app, ModelOptions& options);

struct LoadedModel {
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Backend> backend;
  EngineConfig engine_config;
  std::string chat_template;    // GGUF tokenizer.chat_template; empty when the model has none
};

// Throws tidal::Error with a one-line message for missing or corrupt files.
LoadedModel load_for_serving(const ModelOptions& options);

}  // namespace tidal
