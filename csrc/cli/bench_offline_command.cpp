// `tidal bench-offline`: engine throughput without HTTP, next to this
// machine's own ceilings measured in the same run (memory read bandwidth,
// peak F32 FMA rate, and OpenBLAS's sgemm on the model's own shapes), so
// every figure is reported as a fraction of a roofline.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "cli/blas_reference.h"
#include "cli/commands.h"
#include "cli/kv_cache_report.h"
#include "cli/model_options.h"
#include "core/error.h"
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
  int repeats = 3;
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

// One layer's matrices with m tokens: every layer has the same shapes, so
// their sgemm rate is the whole prefill's.
std::vector<GemmShape> layer_shapes(const Model& m, int64_t tokens) {
  std::vector<GemmShape> shapes;
  const LayerWeights& l = m.layers.front();
  for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
    shapes.push_back({tokens, w->rows, w->cols});
  return shapes;
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
  // A failed request (its replica went down) would make the figures wrong.
  auto step = [&engine] {
    std::vector<RequestOutput> outputs = engine.step();
    for (const RequestOutput& out : outputs)
      if (!out.error.empty()) throw Error(ErrorCode::kInternal, out.error);
    return outputs;
  };
  while (engine.has_unfinished() && generated < uint64_t(batch)) {
    for (const RequestOutput& out : step())
      for (const CompletionDelta& d : out.deltas) generated += d.token_ids.size();
  }
  const auto t1 = Clock::now();
  uint64_t decoded = 0;
  while (engine.has_unfinished()) {
    for (const RequestOutput& out : step())
      for (const CompletionDelta& d : out.deltas) decoded += d.token_ids.size();
  }
  const auto t2 = Clock::now();
  Phase p;
  p.prefill_tok_s = double(batch) * o.prompt_len / std::chrono::duration<double>(t1 - t0).count();
  p.decode_tok_s = double(decoded) / std::chrono::duration<double>(t2 - t1).count();
  p.kv_cache = kv_cache_report(engine.stats());
  return p;
}

// The fastest prefill and the fastest decode of `repeats` runs: on a shared
// machine the fastest run is the one least disturbed, as for the ceilings.
Phase best_of(LoadedModel& m, const BenchOptions& o, int batch) {
  Phase best;
  for (int r = 0; r < o.repeats; ++r) {
    const Phase p = run_batch(m, o, batch);
    best.prefill_tok_s = std::max(best.prefill_tok_s, p.prefill_tok_s);
    best.decode_tok_s = std::max(best.decode_tok_s, p.decode_tok_s);
    best.kv_cache = p.kv_cache;
  }
  return best;
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
  const double peak_gflops = measure_f32_gemm_gflops(*m.pool);
  const size_t bytes = weight_bytes(*m.model);
  const double roofline = bandwidth * 1e9 / double(bytes);
  const double flops_per_token = layer_flops_per_token(*m.model);

  std::printf("model: %s  threads: %d  weights read per decode step: %.1f MiB\n", m.model->config.name.c_str(),
              m.pool->size(), double(bytes) / (1 << 20));
  std::printf("machine: read bandwidth %.2f GB/s, peak F32 FMA %.1f GFLOP/s (measured now)\n", bandwidth, peak_gflops);
  std::printf("decode roofline at batch 1 (bandwidth / weight bytes): %.1f tok/s\n", roofline);
  // The sgemm reference for each batch: its whole prefill is one step of
  // batch x prompt tokens (run_batch raises the token budget to fit).
  std::vector<double> sgemm_gflops;
  std::string blas_library, blas_missing;
  for (int batch : o.batches) {
    const auto rate = measure_blas_sgemm(layer_shapes(*m.model, int64_t(batch) * o.prompt_len), m.pool->size(),
                                         o.repeats, &blas_missing);
    if (!rate) break;
    sgemm_gflops.push_back(rate->gflops);
    blas_library = rate->library;
  }
  if (sgemm_gflops.empty()) {
    std::printf("sgemm reference: none (%s)\n", blas_missing.c_str());
  } else {
    std::printf("sgemm reference: %s on one layer's matrices at each batch's prefill tokens\n", blas_library.c_str());
  }
  std::printf("prompt %d tokens, %d generated tokens per sequence, best of %d runs\n\n", o.prompt_len, o.gen_len,
              o.repeats);
  std::printf("%6s %14s %10s %9s %8s %14s %12s %10s\n", "batch", "prefill tok/s", "GFLOP/s", "% sgemm", "% peak",
              "decode tok/s", "% roofline", "x batch 1");
  double decode1 = 0;
  // Every batch's engine gets the same pool unless a batch above
  // --max-num-seqs raised the pool's cap; each distinct one is reported.
  std::vector<std::string> kv_caches;
  for (size_t i = 0; i < o.batches.size(); ++i) {
    const int batch = o.batches[i];
    const Phase p = best_of(m, o, batch);
    if (i == 0) decode1 = p.decode_tok_s;
    const double prefill_gflops = p.prefill_tok_s * flops_per_token * 1e-9;
    const std::string vs_sgemm =
        i < sgemm_gflops.size() ? std::to_string(int(100.0 * prefill_gflops / sgemm_gflops[i] + 0.5)) + "%" : "-";
    std::printf("%6d %14.1f %10.1f %9s %7.1f%% %14.1f %11.1f%% %9.2fx\n", batch, p.prefill_tok_s, prefill_gflops,
                vs_sgemm.c_str(), 100.0 * prefill_gflops / peak_gflops, p.decode_tok_s, 100.0 * p.decode_tok_s / roofline,
                p.decode_tok_s / decode1);
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
  cmd->add_option("--repeats", o->repeats, "runs of each batch size; the fastest prefill and decode are reported")
      ->check(CLI::Range(1, 100));
  cmd->add_option("--variant", o->variant,
                  "derive this variant from the loaded weights first: f32, f16, bf16, int8, int8-rot, int8-g32, int8-g32-rot, int4-g32, "
                  "int4-g64, int4-g128, w8a16-g32, w4a16-g32, w4a16-g128 (% sgemm and % peak stay relative to F32 rates, so integer variants may pass 100%)")
      ->check([](const std::string& name) {
        return parse_variant(name) ? std::string() : "unknown variant '" + name + "'";
      });
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace tidal
