// `tidal bench-offline`: engine throughput without HTTP, next to this
// machine's own ceilings measured in the same run (memory read bandwidth and
// F32 GEMM rate), so every figure is reported as a fraction of a roofline.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "cli/commands.h"
#include "cli/kv_cache_report.h"
#include "cli/model_options.h"
#include "cpu/machine_roofline.h"
#include "model/variant.h"

namespace tidal {

namespace {

using Clock = std::chrono::steady_clock;

struct BenchOptions {
  ModelOptions model;
  std::vector<int> batches = {1, 8, 32};
  int prompt_len = 128;
  int gen_len = 64;
  std::string variant;  // empty: the weights as loaded
};

struct Phase {
  double prefill_tok_s = 0;
  double decode_tok_s = 0;
  std::string kv_cache;  // kv_cache_report of the run's engine
};

// Bytes of weights one forward pass streams (every matrix once, with the
// integer formats' scales; the embedding table only by the rows it reads,
// so it is left out unless tied).
size_t weight_bytes(const Model& m) {
  size_t total = m.lm_head.bytes() + m.lm_head.scale_bytes();
  for (const LayerWeights& l : m.layers) {
    for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      total += w->bytes() + w->scale_bytes();
    }
  }
  return total;
}

double layer_flops_per_token(const Model& m) {
  double params = 0;
  for (const LayerWeights& l : m.layers) {
    for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      params += double(w->rows) * double(w->cols);
  }
  return 2.0 * params;
}

Phase run_batch(LoadedModel& m, const BenchOptions& o, int batch) {
  EngineConfig config = m.engine_config;
  config.enable_prefix_caching = false;  // measure real prefill work
  config.scheduler.max_num_seqs = std::max(batch, config.scheduler.max_num_seqs);
  config.scheduler.max_num_batched_tokens = std::max(batch * o.prompt_len, config.scheduler.max_num_batched_tokens);
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, config);

  std::mt19937 rng(1234);
  const int vocab = m.tokenizer->vocab_size();
  std::uniform_int_distribution<int> token(3, vocab - 1);
  for (int b = 0; b < batch; ++b) {
    Request r;
    r.id = std::to_string(b);
    for (int i = 0; i < o.prompt_len; ++i) r.prompt.push_back(token(rng));
    r.sampling.temperature = 0;
    r.sampling.max_tokens = o.gen_len;
    r.sampling.ignore_eos = true;
    engine.add_request(std::move(r));
  }
  // The first step(s) prefill every prompt and sample each first token; the
  // steps after that are pure decode.
  const auto t0 = Clock::now();
  uint64_t generated = 0;
  while (engine.has_unfinished() && generated < uint64_t(batch)) {
    for (const RequestOutput& out : engine.step())
      for (const CompletionDelta& d : out.deltas) generated += d.token_ids.size();
  }
  const auto t1 = Clock::now();
  uint64_t decoded = 0;
  while (engine.has_unfinished()) {
    for (const RequestOutput& out : engine.step())
      for (const CompletionDelta& d : out.deltas) decoded += d.token_ids.size();
  }
  const auto t2 = Clock::now();
  Phase p;
  p.prefill_tok_s = double(batch) * o.prompt_len / std::chrono::duration<double>(t1 - t0).count();
  p.decode_tok_s = double(decoded) / std::chrono::duration<double>(t2 - t1).count();
  p.kv_cache = kv_cache_report(engine.stats());
  return p;
}

void run_bench(const BenchOptions& o) {
  LoadedModel m = load_for_serving(o.model);
  const std::string loaded_storage = describe_storage(*m.model);
  if (!o.variant.empty()) {
    const VariantSpec spec = *parse_variant(o.variant);  // checked when parsing the option
    m.model = std::make_unique<Model>(derive_variant(*m.model, spec));
    std::printf("variant: %s\n", derivation_text(spec, loaded_storage).c_str());
  }
  const double bandwidth = measure_read_bandwidth_gbs(*m.pool);
  const double gflops = measure_f32_gemm_gflops(*m.pool);
  const size_t bytes = weight_bytes(*m.model);
  const double roofline = bandwidth * 1e9 / double(bytes);
  const double flops_per_token = layer_flops_per_token(*m.model);

  std::printf("model: %s  threads: %d  weights read per decode step: %.1f MiB\n", m.model->config.name.c_str(),
              m.pool->size(), double(bytes) / (1 << 20));
  std::printf("machine: read bandwidth %.2f GB/s, F32 GEMM %.1f GFLOP/s (measured now)\n", bandwidth, gflops);
  std::printf("decode roofline at batch 1 (bandwidth / weight bytes): %.1f tok/s\n", roofline);
  std::printf("prompt %d tokens, %d generated tokens per sequence\n\n", o.prompt_len, o.gen_len);
  std::printf("%6s %14s %10s %14s %12s %14s\n", "batch", "prefill tok/s", "% GEMM", "decode tok/s", "% roofline",
              "x batch 1");
  double decode1 = 0;
  // Every batch's engine gets the same pool unless a batch above
  // --max-num-seqs raised the pool's cap; each distinct one is reported.
  std::vector<std::string> kv_caches;
  for (int batch : o.batches) {
    const Phase p = run_batch(m, o, batch);
    if (batch == o.batches.front()) decode1 = p.decode_tok_s;
    const double prefill_pct = 100.0 * p.prefill_tok_s * flops_per_token / (gflops * 1e9);
    std::printf("%6d %14.1f %9.1f%% %14.1f %11.1f%% %13.2fx\n", batch, p.prefill_tok_s, prefill_pct, p.decode_tok_s,
                100.0 * p.decode_tok_s / roofline, p.decode_tok_s / decode1);
    std::fflush(stdout);
    if (std::find(kv_caches.begin(), kv_caches.end(), p.kv_cache) == kv_caches.end()) kv_caches.push_back(p.kv_cache);
  }
  std::printf("\n");
  for (const std::string& kv_cache : kv_caches) std::printf("%s\n", kv_cache.c_str());
}

}  // namespace

void register_bench_offline_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench-offline", "measure prefill and decode throughput against this machine's roofline");
  add_model_options(*cmd, o->model);
  cmd->add_option("--batches", o->batches, "batch sizes")->check(CLI::Range(1, 4096));
  cmd->add_option("--prompt-len", o->prompt_len, "prompt tokens per sequence")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--gen-len", o->gen_len, "generated tokens per sequence")->check(CLI::Range(2, 1 << 16));
  cmd->add_option("--variant", o->variant,
                  "derive this variant from the loaded weights first: f32, f16, bf16, int8, int8-g32, int4-g32, "
                  "int4-g64, int4-g128 (% GEMM stays relative to the F32 rate, so integer variants may pass 100%)")
      ->check([](const std::string& name) {
        return parse_variant(name) ? std::string() : "unknown variant '" + name + "'";
      });
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace tidal
