// `tidal eval` and the evaluator behind it: the per-position metrics on
// hand-computed distributions, windowing, perplexity against two independent
// computations (the engine's own sampled-token log-probabilities, and a
// one-token-at-a-time forward with a naive log-softmax), the quality of
// stories260K on the held-out TinyStories text, and the command line.
#include <gtest/gtest.h>
#include <unistd.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include "core/error.h"
#include "engine/eval_profile.h"
#include "engine/variant_evaluator.h"
#include "model/llama_forward.h"
#include "model/variant.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

std::string heldout_path() { return data_path("eval/tinystories_heldout.txt"); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The held-out text as the model's tokenizer splits it (no BOS), or its
// first `limit` tokens where the whole text would only make a test slower.
std::vector<int32_t> heldout_tokens(const Tokenizer& tok, size_t limit = SIZE_MAX) {
  std::vector<int32_t> tokens = tok.encode(read_file(heldout_path()), false, true);
  tokens.resize(std::min(tokens.size(), limit));
  return tokens;
}

Model derive(const Model& m, const char* name) { return derive_variant(m, *parse_variant(name)); }

TEST(EvalMetrics, ScorePositionMatchesHandComputedValues) {
  // Base P = (1/4, 3/4), variant P = (1/2, 1/2): logits are only defined up
  // to a constant, so the variant's are shifted to check normalization.
  const std::vector<float> base = {0.0f, std::log(3.0f)};
  const std::vector<float> variant = {5.0f, 5.0f};
  const PositionScore s = score_position(base, variant, 1);
  EXPECT_NEAR(s.base_nll, -std::log(0.75), 1e-7);
  EXPECT_NEAR(s.variant_nll, std::log(2.0), 1e-12);
  // The base picks token 1, the variant's tie goes to the first index, 0.
  EXPECT_FALSE(s.top1_match);
  EXPECT_NEAR(s.kl, 0.25 * std::log(0.25 / 0.5) + 0.75 * std::log(0.75 / 0.5), 1e-7);

  QualityTotals t;
  EXPECT_TRUE(std::isnan(t.variant_perplexity()));
  t.add(s);
  t.add(score_position(base, base, 0));
  EXPECT_NEAR(t.variant_perplexity(), std::exp((std::log(2.0) - std::log(0.25)) / 2), 1e-6);
  EXPECT_NEAR(t.base_perplexity(), std::exp((-std::log(0.75) - std::log(0.25)) / 2), 1e-6);
  EXPECT_EQ(t.top1_agreement(), 0.5);
}

TEST(EvalWindows, WithBosEveryTextTokenIsPredictedOnce) {
  std::vector<int32_t> text(10);
  std::iota(text.begin(), text.end(), 100);
  const auto w = split_windows(text, 1, 4);
  const std::vector<std::vector<int32_t>> want = {
      {1, 100, 101, 102}, {1, 103, 104, 105}, {1, 106, 107, 108}, {1, 109}};
  EXPECT_EQ(w, want);
}

TEST(EvalWindows, WithoutBosEachWindowStartsWithContextOnly) {
  std::vector<int32_t> text(9);
  std::iota(text.begin(), text.end(), 100);
  // The last window would be the single token 108, which predicts nothing.
  const std::vector<std::vector<int32_t>> want = {{100, 101, 102, 103}, {104, 105, 106, 107}};
  EXPECT_EQ(split_windows(text, -1, 4), want);
  EXPECT_THROW(split_windows(text, 1, 1), Error);
}

TEST(EvalStories260K, VariantAgainstItselfAgreesExactly) {
  TestModel m = load_stories();
  const auto windows = split_windows(heldout_tokens(*m.tokenizer, 1500), m.tokenizer->bos_id(), 256);
  const Model a = derive(*m.model, "f32");
  const Model b = derive(*m.model, "f32");
  // Two separately derived copies run separately, and one model standing for both.
  for (const Model* base : {&b, &a}) {
    const QualityTotals q = evaluate_variant(a, *base, *m.backend, *m.pool, windows);
    EXPECT_EQ(q.top1_agreement(), 1.0);
    EXPECT_EQ(q.mean_kl(), 0.0);
    EXPECT_EQ(q.variant_perplexity(), q.base_perplexity());
  }
}

// The measured perplexity of stories260K (f32) on the held-out text, BOS
// plus 511 tokens per window, is 5.9271. The band is +-2%: numerics that
// merely reorder sums move it by less than 0.01% (f16 weights move it by
// 0.005%), while a wrong RoPE angle, an off-by-one target or a tokenizer
// change moves it far more.
TEST(EvalStories260K, PerplexityOnHeldoutTextIsInItsMeasuredBand) {
  TestModel m = load_stories();
  const std::vector<int32_t> text = heldout_tokens(*m.tokenizer);
  const auto windows = split_windows(text, m.tokenizer->bos_id(), 512);
  const QualityTotals q = evaluate_variant(*m.model, *m.model, *m.backend, *m.pool, windows);
  EXPECT_EQ(q.positions, int64_t(text.size()));
  EXPECT_GT(q.variant_perplexity(), 5.9271 * 0.98);
  EXPECT_LT(q.variant_perplexity(), 5.9271 * 1.02);

  // Its first 2000 tokens in random order tell no story: the model, sure of
  // continuations that do not come, measures a perplexity near 15000.
  std::vector<int32_t> shuffled(text.begin(), text.begin() + 2000);
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(42));
  const QualityTotals s = evaluate_variant(*m.model, *m.model, *m.backend, *m.pool,
                                           split_windows(shuffled, m.tokenizer->bos_id(), 512));
  EXPECT_GT(s.variant_perplexity(), 100 * q.variant_perplexity());
}

TEST(EvalStories260K, F16FollowsF32) {
  TestModel m = load_stories();
  const auto windows = split_windows(heldout_tokens(*m.tokenizer, 3000), m.tokenizer->bos_id(), 512);
  const Model f32 = derive(*m.model, "f32");
  const Model f16 = derive(*m.model, "f16");
  const QualityTotals q = evaluate_variant(f16, f32, *m.backend, *m.pool, windows);
  EXPECT_GE(q.top1_agreement(), 0.99);
  EXPECT_GT(q.mean_kl(), 0.0);
  EXPECT_LT(q.mean_kl(), 1e-4);
  EXPECT_NEAR(q.variant_perplexity(), q.base_perplexity(), 0.01 * q.base_perplexity());
}

// Measured on these 3000 tokens: top-1 agreement 0.978, mean KL 0.0019
// (weights rounded per row and activations per token, both to int8).
TEST(EvalStories260K, Int8FollowsF32) {
  TestModel m = load_stories();
  const auto windows = split_windows(heldout_tokens(*m.tokenizer, 3000), m.tokenizer->bos_id(), 512);
  const Model f32 = derive(*m.model, "f32");
  const Model int8 = derive(*m.model, "int8");
  const QualityTotals q = evaluate_variant(int8, f32, *m.backend, *m.pool, windows);
  EXPECT_GE(q.top1_agreement(), 0.95);
  EXPECT_GT(q.mean_kl(), 1e-4);
  EXPECT_LT(q.mean_kl(), 1e-2);
}

// Sampling through the engine reports each sampled token's log-probability
// under the model's raw distribution; scoring the sampled text with the
// evaluator must give the same total.
TEST(EvalStories260K, PerplexityMatchesTheEnginesSampledLogprobs) {
  TestModel m = load_stories();
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  Request r;
  r.id = "sample";
  r.prompt = {m.tokenizer->bos_id()};
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 7;
  r.sampling.max_tokens = 20;
  r.sampling.ignore_eos = true;
  r.sampling.logprobs = 0;
  engine.add_request(std::move(r));
  std::vector<int32_t> tokens;
  double logprob_sum = 0.0;
  while (engine.has_unfinished()) {
    for (const RequestOutput& out : engine.step()) {
      for (const CompletionDelta& d : out.deltas) {
        tokens.insert(tokens.end(), d.token_ids.begin(), d.token_ids.end());
        for (float lp : d.logprobs) logprob_sum += lp;
      }
    }
  }
  ASSERT_EQ(tokens.size(), 20u);
  const QualityTotals q =
      evaluate_variant(*m.model, *m.model, *m.backend, *m.pool, split_windows(tokens, m.tokenizer->bos_id(), 64));
  ASSERT_EQ(q.positions, 20);
  // The engine rounds each log-probability to float.
  EXPECT_NEAR(q.variant_nll, -logprob_sum, 1e-5);
  EXPECT_NEAR(std::log(q.variant_perplexity()), -logprob_sum / 20, 1e-6);
}

// A window longer than one evaluation chunk (128 positions), recomputed as
// decoding would: one token per forward pass, then a naive long-double
// log-softmax of each row.
TEST(EvalStories260K, PerplexityMatchesOneTokenAtATimeBruteForce) {
  TestModel m = load_stories();
  const Model& model = *m.model;
  const auto windows = split_windows(heldout_tokens(*m.tokenizer, 299), m.tokenizer->bos_id(), 300);
  const std::vector<int32_t>& w = windows.front();
  ASSERT_EQ(w.size(), 300u);

  LlamaForward forward(model, *m.backend);
  const int block = 16;
  KvCache cache({model.config.n_layers, model.config.n_kv_heads, model.config.head_dim, block, 300 / block + 1});
  std::vector<int32_t> table(size_t(cache.shape().num_blocks));
  std::iota(table.begin(), table.end(), 0);
  std::vector<float> logits(size_t(model.config.vocab_size));
  long double nll = 0;
  for (int pos = 0; pos + 1 < int(w.size()); ++pos) {
    const int32_t zero = 0;
    ForwardBatch batch;
    batch.tokens = &w[size_t(pos)];
    batch.meta.n_tokens = 1;
    batch.meta.positions = &pos;
    batch.meta.seq_index = &zero;
    batch.meta.slot_mapping = &pos;
    batch.meta.block_tables = {table};
    batch.logits_rows = {0};
    forward.forward(cache, batch, logits.data());
    long double sum = 0;
    for (float l : logits) sum += std::exp((long double)l);
    nll += std::log(sum) - (long double)logits[size_t(w[size_t(pos) + 1])];
  }
  const QualityTotals q = evaluate_variant(model, model, *m.backend, *m.pool, {w});
  ASSERT_EQ(q.positions, 299);
  EXPECT_NEAR(q.variant_nll, double(nll), 1e-9 * double(nll));
}

TEST(EvalProfile, MergeKeepsOtherVariantsAndRefusesAnotherModelsCatalog) {
  const std::string path = testing::TempDir() + "eval_profile_merge.json";
  std::remove(path.c_str());
  VariantProfile p;
  p.derivation = "f16 (round to nearest even) from f32";
  p.bytes = 123;
  p.eval_tokens = 10;
  p.measured_at = iso8601_utc(0);
  EXPECT_EQ(p.measured_at, "1970-01-01T00:00:00Z");
  merge_variant_profile(path, "m.gguf", "f16", p);
  p.bytes = 456;
  merge_variant_profile(path, "m.gguf", "int8", p);
  p.bytes = 789;
  merge_variant_profile(path, "m.gguf", "f16", p);
  const nlohmann::json j = read_json(path);
  EXPECT_EQ(j["model"], "m.gguf");
  EXPECT_EQ(j["variants"].size(), 2u);
  EXPECT_EQ(j["variants"]["f16"]["bytes"], 789);
  EXPECT_EQ(j["variants"]["int8"]["bytes"], 456);
  EXPECT_THROW(merge_variant_profile(path, "other.gguf", "f16", p), Error);
  std::ofstream(path) << "not json";
  EXPECT_THROW(merge_variant_profile(path, "m.gguf", "f16", p), Error);
}

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};

CommandResult run_eval(const std::string& args) {
  // One file per test process: ctest runs these tests concurrently.
  const std::string err_path = testing::TempDir() + "tidal_eval_stderr_" + std::to_string(getpid()) + ".txt";
  const std::string cmd = std::string(TIDAL_BIN_DIR) + "/tidal eval " + args + " 2>" + err_path;
  CommandResult r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) r.out.append(buf.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_file(err_path);
  return r;
}

std::string stories_eval_args() {
  return "--model " + data_path("stories260K/stories260K.bin") + " --threads 2 --max-tokens 300";
}

TEST(EvalCli, JsonReportAndProfileCatalog) {
  const std::string profile = testing::TempDir() + "eval_cli_profile.json";
  std::remove(profile.c_str());
  const CommandResult r = run_eval(stories_eval_args() + " --variant bf16 --text " + heldout_path() +
                                   " --context 128 --json --profile-out " + profile);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["variant"], "bf16");
  EXPECT_EQ(j["base"], "f32");
  EXPECT_EQ(j["eval_tokens"], 300);  // BOS in every window: each text token is predicted
  EXPECT_EQ(j["windows"], 3);        // 127 text tokens per window
  // Half the matrix bytes; the norm vectors stay f32.
  EXPECT_LT(j["bytes"].get<double>(), 0.51 * j["base_bytes"].get<double>());
  EXPECT_GE(j["top1_agreement"].get<double>(), 0.95);
  EXPECT_GT(j["decode_tok_s_batch1"].get<double>(), 0.0);

  const nlohmann::json catalog = read_json(profile);
  EXPECT_EQ(catalog["model"], "stories260K.bin");
  const nlohmann::json& e = catalog["variants"]["bf16"];
  for (const char* key : {"derivation", "bytes", "perplexity", "base", "base_perplexity", "top1_agreement", "mean_kl",
                          "eval_text", "eval_tokens", "decode_tok_s_batch1", "threads", "measured_at"}) {
    EXPECT_TRUE(e.contains(key)) << key;
  }
  EXPECT_EQ(e["eval_text"], "tinystories_heldout.txt");
  EXPECT_EQ(e["perplexity"], j["perplexity"]);
  EXPECT_EQ(e["threads"], 2);
}

void expect_one_line_error(const CommandResult& r, const std::string& mentions) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  EXPECT_NE(r.err.find(mentions), std::string::npos) << r.err;
}

TEST(EvalCli, InputMistakesAreOneLineErrors) {
  expect_one_line_error(run_eval(stories_eval_args() + " --variant f16 --text /nonexistent/text.txt"),
                        "/nonexistent/text.txt");
  expect_one_line_error(run_eval(stories_eval_args() + " --variant int3 --text " + heldout_path()), "int3");
  expect_one_line_error(run_eval(stories_eval_args() + " --variant f16 --base f16,int8 --text " + heldout_path()),
                        "--base");
  expect_one_line_error(run_eval(stories_eval_args() + " --variant f16 --context 4096 --text " + heldout_path()),
                        "--context");
  expect_one_line_error(run_eval(stories_eval_args() + " --text " + heldout_path()), "--variant");
}

}  // namespace
}  // namespace tidal::test
