#include "cli/model_options.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "model/gguf.h"
#include "model/loader.h"
#include "reconfig/mpi_worker.h"

namespace tidal {

namespace fs = std::filesystem;

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("-m,--model", o.model, "model file (.gguf or llama2.c .bin)")->required();
  app.add_option("--tokenizer", o.tokenizer,
                 "tokenizer (.model sentencepiece, llama2.c .bin, or .gguf); default: the GGUF's own, or "
                 "tokenizer.model / tok512.model / tok512.bin next to the model");
  app.add_option("-t,--threads", o.threads, "CPU threads (0 = all)")->check(CLI::Range(0, 1024));
  app.add_flag("--f32", o.f32, "dequantize all weights to F32 at load");
  app.add_option("--kv-cache-mb", o.kv_cache_mb, "KV cache size in MiB")->check(CLI::Range(1, 1 << 20));
  app.add_option("--kv-cache-dtype", o.kv_cache_dtype,
                 "KV cache element type: f32, or f16 (half the memory per token, K/V rounded to half precision)")
      ->check(CLI::IsMember({"f32", "f16"}))
      ->capture_default_str();
  app.add_option("--block-size", o.block_size, "tokens per KV block")->check(CLI::Range(1, 1024));
  app.add_option("--max-num-seqs", o.max_num_seqs, "sequences per step")->check(CLI::Range(1, 4096));
  app.add_option("--max-num-batched-tokens", o.max_num_batched_tokens, "tokens per step")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--target-tpot-ms", o.target_tpot_ms,
                 "keep each step, hence every stream's time per output token, under this many ms by limiting "
                 "the tokens a step takes while streams decode (trades throughput and first-token latency; "
                 "0 = off)")
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--max-model-len", o.max_model_len, "context limit (0 = the model's)")->check(CLI::Range(0, 1 << 22));
  app.add_flag("--no-prefix-caching", o.no_prefix_caching, "disable prefix caching");
  app.add_option("--policy", o.policy, "scheduling policy")->check(CLI::IsMember({"fcfs", "priority"}));
}

namespace {

std::string find_tokenizer(const ModelOptions& o) {
  if (!o.tokenizer.empty()) return o.tokenizer;
  const fs::path model(o.model);
  if (model.extension() == ".gguf") return o.model;
  for (const char* name : {"tokenizer.model", "tok512.model", "tokenizer.bin", "tok512.bin"}) {
    const fs::path candidate = model.parent_path() / name;
    if (fs::exists(candidate)) return candidate.string();
  }
  throw Error(ErrorCode::kNotFound, "no tokenizer found next to " + o.model + "; pass --tokenizer");
}

}  // namespace

LoadedModel load_model_files(const ModelOptions& o) {
  LoadedModel m;
  LoadOptions load;
  load.dequantize_to_f32 = o.f32;
  m.model = std::make_unique<Model>(load_model(o.model, load));
  const std::string tok_path = find_tokenizer(o);
  m.tokenizer = load_tokenizer(tok_path);
  if (m.tokenizer->vocab_size() > m.model->config.vocab_size) {
    throw Error(ErrorCode::kInvalidArgument, "tokenizer " + tok_path + " has " +
                                                 std::to_string(m.tokenizer->vocab_size()) +
                                                 " tokens but the model only " +
                                                 std::to_string(m.model->config.vocab_size));
  }
  if (fs::path(o.model).extension() == ".gguf") {
    m.chat_template = GgufFile::open(o.model)->get_string("tokenizer.chat_template");
  }
  EngineConfig& e = m.engine_config;
  e.block_size = o.block_size;
  e.kv_cache_bytes = size_t(o.kv_cache_mb) << 20;
  e.kv_cache_dtype = o.kv_cache_dtype == "f16" ? DType::F16 : DType::F32;  // the option admits only these
  e.enable_prefix_caching = !o.no_prefix_caching;
  e.scheduler.max_num_seqs = o.max_num_seqs;
  e.scheduler.max_num_batched_tokens = o.max_num_batched_tokens;
  e.scheduler.max_model_len = o.max_model_len;
  e.scheduler.target_step_seconds = o.target_tpot_ms / 1000.0;
  e.scheduler.priority_policy = o.policy == "priority";
  // Requests without a seed draw from a stream that differs run to run.
  e.default_seed = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  return m;
}

LoadedModel load_for_serving(const ModelOptions& o) {
  LoadedModel m = load_model_files(o);
  m.pool = std::make_unique<ThreadPool>(o.threads);
  m.backend = std::make_unique<CpuBackend>(*m.pool);
  return m;
}

void add_parallel_options(CLI::App& app, ParallelConfig& p) {
  app.add_option("--tp", p.tp, "tensor-parallel ranks per stage (must divide the KV heads)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--pp", p.pp, "pipeline stages (contiguous layer ranges)")->check(CLI::Range(1, 1024));
  app.add_option("--dp", p.dp, "data-parallel engine replicas, each tp * pp ranks")->check(CLI::Range(1, 1024));
  app.add_option("--comm", p.comm, "communicator: local (threads), mpi (under mpirun -np tp*pp), nccl")
      ->check(CLI::IsMember({"local", "mpi", "nccl"}))
      ->capture_default_str();
  app.add_option("--comm-timeout", p.comm_timeout_s, "seconds a rank may stay silent before it counts as lost")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();
}

namespace {

void check_mpi_launch(const ParallelConfig& parallel) {
  // Under mpirun every process would otherwise run an engine of its own.
  for (const char* size : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* v = std::getenv(size);
    if (parallel.comm == "local" && v && std::atoi(v) > 1) {
      throw Error(ErrorCode::kInvalidArgument, "started by mpirun with --comm local: pass --comm mpi");
    }
  }
}

}  // namespace

ModelSource ModelSetup::source(int threads) {
  return {*loaded.model, *loaded.tokenizer, *loaded.pool, *turns, loaded.engine_config, threads, world.get(),
          variants.get()};
}

ModelSetup setup_model(const ModelOptions& o, const ParallelConfig& parallel) {
  check_mpi_launch(parallel);
  ModelSetup s;
  if (parallel.comm != "local") {
    s.world = std::make_unique<MpiWorld>(std::chrono::milliseconds(int64_t(parallel.comm_timeout_s * 1000.0)));
  }
  s.loaded = load_model_files(o);
  if (s.world && !s.world->is_driver()) {
    serve_mpi_worker(*s.world, *s.loaded.model, o.threads);
    s.worker_done = true;
    return s;
  }
  s.loaded.pool = std::make_unique<ThreadPool>(o.threads);
  s.turns = std::make_unique<PoolTurns>();
  s.variants = std::make_unique<VariantStore>(*s.loaded.model);
  return s;
}

ServedConfig flag_config(const ModelOptions& o, const std::string& variant, const ParallelConfig& layout) {
  ServedConfig c;
  c.variant = variant;
  c.layout = layout;
  c.max_num_seqs = o.max_num_seqs;
  c.max_num_batched_tokens = o.max_num_batched_tokens;
  c.target_tpot_ms = o.target_tpot_ms;
  return c;
}

EngineSetup start_engine(const ModelOptions& o, const ParallelConfig& parallel) {
  EngineSetup s;
  s.model = setup_model(o, parallel);
  if (s.model.worker_done) return s;
  s.runtime = std::make_unique<ConfigRuntime>(s.model.source(o.threads), flag_config(o, kBaseVariant, parallel));
  s.engine = &s.runtime->engine();
  return s;
}

}  // namespace tidal
