// `tidal eval`: how much quality a model variant gives up against its base.
// One load of the model file yields both (derive_variant), they read the same
// text in the same windows on the same backend, and the command reports the
// variant's perplexity, the base's, their top-1 agreement and mean
// KL(P_base || P_variant), plus the variant's batch-1 decode speed; the
// result can be merged into the catalog `tidal serve --variants` reads.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "engine/decode_speed.h"
#include "engine/eval_profile.h"
#include "engine/variant_evaluator.h"
#include "model/variant.h"

namespace tidal {

namespace {

namespace fs = std::filesystem;

constexpr int kDefaultContext = 512;
// Batch-1 decode timing: prompt tokens taken from the text, tokens generated.
constexpr size_t kDecodePromptTokens = 16;
constexpr int kDecodeTokens = 64;

struct EvalOptions {
  std::string model;
  std::string tokenizer;
  int threads = 0;
  std::string variant;
  std::string base = "f32";
  std::string text;
  int context = 0;
  int max_tokens = 0;
  bool json = false;
  std::string profile_out;
};

VariantSpec one_variant(const std::string& name, const char* option) {
  if (name.find(',') != std::string::npos) {
    throw Error(ErrorCode::kInvalidArgument, std::string(option) + " takes one variant name, not a list");
  }
  return parse_variant_list(name).front();
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in || fs::is_directory(path)) throw Error(ErrorCode::kNotFound, "cannot read text file " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct DerivedModel {
  Model model;
  std::string derivation;
  size_t bytes = 0;
};

DerivedModel derive(const Model& file_model, const VariantSpec& spec, const std::string& storage) {
  DerivedModel d{derive_variant(file_model, spec), derivation_text(spec, storage), 0};
  d.bytes = model_weight_bytes(d.model);
  return d;
}

double mib(size_t bytes) { return double(bytes) / (1 << 20); }

// Everything one evaluation found, for the table, the JSON and the catalog.
struct EvalRun {
  std::string model_file;  // name without directory
  std::string storage;     // what the file's matrices are stored as
  std::string variant, base;
  std::string base_derivation;
  size_t base_bytes = 0;
  int context = 0;
  size_t windows = 0;
  bool bos_per_window = false;
  double eval_seconds = 0.0;
  VariantProfile profile;
};

EvalRun evaluate(const EvalOptions& o) {
  // Every input mistake is reported before the model is loaded.
  const VariantSpec variant_spec = one_variant(o.variant, "--variant");
  const VariantSpec base_spec = one_variant(o.base, "--base");
  const std::string text = read_text_file(o.text);

  ModelOptions load;
  load.model = o.model;
  load.tokenizer = o.tokenizer;
  load.threads = o.threads;
  load.f32 = false;  // variants are derived from the file's own encoding
  LoadedModel m = load_for_serving(load);
  const ModelConfig& config = m.model->config;
  EvalRun run;
  run.context = o.context > 0 ? o.context : std::min(config.max_seq_len, kDefaultContext);
  if (run.context > config.max_seq_len) {
    throw Error(ErrorCode::kInvalidArgument, "--context " + std::to_string(run.context) + " exceeds the model's " +
                                                 std::to_string(config.max_seq_len) + " tokens");
  }
  const Tokenizer& tok = *m.tokenizer;
  std::vector<int32_t> tokens = tok.encode(text, /*add_bos=*/false, /*parse_special=*/true);
  if (o.max_tokens > 0 && tokens.size() > size_t(o.max_tokens)) tokens.resize(size_t(o.max_tokens));
  const int32_t bos = tok.add_bos_by_default() ? tok.bos_id() : -1;
  const auto windows = split_windows(tokens, bos, run.context);
  if (windows.empty()) throw Error(ErrorCode::kInvalidArgument, o.text + " has too few tokens to evaluate");

  // Both variants come from the one load; the file's own tensors are
  // released once they are derived (a derived model owns its storage).
  run.storage = describe_storage(*m.model);
  const DerivedModel variant = derive(*m.model, variant_spec, run.storage);
  std::optional<DerivedModel> separate_base;
  if (base_spec.name != variant_spec.name) separate_base = derive(*m.model, base_spec, run.storage);
  const DerivedModel& base = separate_base ? *separate_base : variant;
  m.model.reset();

  const auto start = std::chrono::steady_clock::now();
  const QualityTotals q = evaluate_variant(variant.model, base.model, *m.backend, *m.pool, windows);
  run.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const std::vector<int32_t>& first = windows.front();
  const std::vector<int32_t> prompt(first.begin(), first.begin() + std::min(first.size(), kDecodePromptTokens));

  run.model_file = fs::path(o.model).filename().string();
  run.variant = variant_spec.name;
  run.base = base_spec.name;
  run.base_derivation = base.derivation;
  run.base_bytes = base.bytes;
  run.windows = windows.size();
  run.bos_per_window = bos >= 0;
  VariantProfile& p = run.profile;
  p.derivation = variant.derivation;
  p.bytes = int64_t(variant.bytes);
  p.perplexity = q.variant_perplexity();
  p.base = base_spec.name;
  p.base_perplexity = q.base_perplexity();
  p.top1_agreement = q.top1_agreement();
  p.mean_kl = q.mean_kl();
  p.eval_text = fs::path(o.text).filename().string();
  p.eval_tokens = q.positions;
  p.decode_tok_s_batch1 = measure_decode_tok_s(variant.model, tok, *m.backend, prompt, kDecodeTokens);
  p.threads = m.pool->size();
  p.measured_at = iso8601_utc(std::time(nullptr));
  return run;
}

void print_json(const EvalRun& r) {
  nlohmann::json j = to_json(r.profile);
  j["model"] = r.model_file;
  j["variant"] = r.variant;
  j["base_derivation"] = r.base_derivation;
  j["base_bytes"] = int64_t(r.base_bytes);
  j["context"] = r.context;
  j["windows"] = r.windows;
  j["bos_per_window"] = r.bos_per_window;
  j["eval_seconds"] = r.eval_seconds;
  std::cout << j.dump() << "\n";
}

void print_table(const EvalRun& r, const EvalOptions& o) {
  const VariantProfile& p = r.profile;
  std::printf("model            %s (stored as %s)\n", r.model_file.c_str(), r.storage.c_str());
  std::printf("text             %s: %lld positions scored in %zu windows of up to %d tokens%s\n", o.text.c_str(),
              (long long)p.eval_tokens, r.windows, r.context, r.bos_per_window ? ", each starting with BOS" : "");
  std::printf("variant          %s: %s\n", r.variant.c_str(), p.derivation.c_str());
  std::printf("base             %s: %s\n\n", r.base.c_str(), r.base_derivation.c_str());
  std::printf("%-16s %14s %14s\n", "", ("variant " + r.variant).c_str(), ("base " + r.base).c_str());
  std::printf("%-16s %10.1f MiB %10.1f MiB\n", "weights", mib(size_t(p.bytes)), mib(r.base_bytes));
  std::printf("%-16s %14.4f %14.4f\n\n", "perplexity", p.perplexity, p.base_perplexity);
  std::printf("top-1 agreement  %.4f\n", p.top1_agreement);
  std::printf("mean KL          %.6g nats (base || variant)\n", p.mean_kl);
  std::printf("decode           %.1f tok/s (batch 1, %d greedy tokens, %d threads)\n", p.decode_tok_s_batch1,
              kDecodeTokens, p.threads);
  std::printf("eval time        %.2f s\n", r.eval_seconds);
  if (!o.profile_out.empty()) std::printf("profile          %s updated\n", o.profile_out.c_str());
}

void run_eval(const EvalOptions& o) {
  const EvalRun run = evaluate(o);
  if (!o.profile_out.empty()) merge_variant_profile(o.profile_out, run.model_file, run.variant, run.profile);
  if (o.json) {
    print_json(run);
  } else {
    print_table(run, o);
  }
}

}  // namespace

void register_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "measure a variant's perplexity on a text, and its top-1 agreement and mean KL against a base variant");
  cmd->footer(
      "Both variants are derived from one load of --model. The text is tokenized whole (special-token text such "
      "as <|im_start|> becomes its token) and cut into non-overlapping windows of --context tokens: when the model "
      "adds BOS, each window is BOS plus the next context-1 tokens and every text token is predicted once; "
      "otherwise a window's first token only conditions the rest. KL(P_base || P_variant) and perplexities are "
      "computed in double precision from log-softmax. The variant's decode speed is timed afterwards: 64 greedy "
      "tokens at batch 1 through the engine, after one warm-up run.");
  cmd->add_option("-m,--model", o->model, "model file (.gguf or llama2.c .bin)")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer; default: the GGUF's own, or the one next to the model");
  cmd->add_option("-t,--threads", o->threads, "CPU threads (0 = all)")->check(CLI::Range(0, 1024));
  cmd->add_option("--variant", o->variant, "variant to evaluate: f32, f16, bf16, int8, int8-rot, int8-g32, int8-g32-rot, int4-g32, int4-g64, int4-g128, w8a16-g32, w4a16-g32, w4a16-g128")
      ->required();
  cmd->add_option("--base", o->base, "reference variant (f32: the exact dequantization of the file)")
      ->capture_default_str();
  cmd->add_option("--text", o->text, "text file to evaluate on")->required();
  cmd->add_option("--context", o->context, "window length in tokens (0 = min(model context, 512))")
      ->check(CLI::Range(0, 1 << 22));
  cmd->add_option("--max-tokens", o->max_tokens, "evaluate only the text's first N tokens (0 = all)")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_flag("--json", o->json, "print one JSON object instead of the table");
  cmd->add_option("--profile-out", o->profile_out,
                  "merge the result into this JSON variant catalog (created if missing; other variants kept); "
                  "tidal serve looks for <model file>.variants.json");
  cmd->callback([o] { run_eval(*o); });
}

}  // namespace tidal
