// End to end on the device: greedy generation of stories260K (F32) and
// SmolLM2-135M (Q4_1/Q8_0) against the goldens the CPU backend's F32 output
// is held to (tests/integration/test_golden.cpp), and batch invariance of a
// whole forward pass. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cuda/cuda_sampler.h"
#include "cuda_test_util.h"
#include "device_forward.h"
#include "model/loader.h"
#include "model/tokenizer.h"

namespace tidal::cuda::test {
namespace {

std::string data_path(const std::string& rel) { return std::string(TIDAL_TEST_DATA) + "/" + rel; }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  std::vector<float> v(size_t(in.tellg()) / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  return v;
}

// One sequence per entry; block b of sequence s is physical block
// s * blocks_per_seq + (blocks_per_seq - 1 - b) (reversed, as any order works).
struct Sequences {
  int blocks_per_seq;
  int block_size = 16;
  std::vector<std::vector<int32_t>> tables;

  Sequences(int n_seqs, int max_len) : blocks_per_seq((max_len + 15) / 16) {
    for (int s = 0; s < n_seqs; ++s) {
      std::vector<int32_t> t(static_cast<size_t>(blocks_per_seq));
      for (int b = 0; b < blocks_per_seq; ++b) t[size_t(b)] = s * blocks_per_seq + blocks_per_seq - 1 - b;
      tables.push_back(t);
    }
  }
};

// A flat batch of (sequence, position, token) with its metadata.
struct Batch {
  std::vector<int32_t> tokens, positions, seq_index, slots, logits_rows;
  AttentionMeta meta;

  void add(const Sequences& s, int seq, int pos, int32_t token, bool wants_logits) {
    if (wants_logits) logits_rows.push_back(int32_t(tokens.size()));
    tokens.push_back(token);
    positions.push_back(pos);
    seq_index.push_back(seq);
    slots.push_back(s.tables[size_t(seq)][size_t(pos / s.block_size)] * s.block_size + pos % s.block_size);
  }
  const AttentionMeta& finish(const Sequences& s) {
    meta = AttentionMeta{};
    meta.n_tokens = int(tokens.size());
    meta.positions = positions.data();
    meta.seq_index = seq_index.data();
    meta.slot_mapping = slots.data();
    for (const auto& t : s.tables) meta.block_tables.emplace_back(t);
    return meta;
  }
};

struct Greedy {
  std::vector<int32_t> tokens;
  std::vector<float> prompt_logits;  // after the prompt
};

// Prefills the prompt in one pass, then decodes one token at a time, taking
// the argmax with the device sampler.
Greedy generate(const DeviceModel& model, const std::vector<int32_t>& prompt, int max_tokens) {
  const ModelConfig& c = model.config;
  CudaBackend backend;
  DeviceForward forward(model, backend);
  const Sequences seqs(1, int(prompt.size()) + max_tokens);
  KvCacheShape shape{c.n_layers, c.n_kv_heads, c.head_dim, 16, seqs.blocks_per_seq};
  CudaKvCache cache(shape);
  DeviceBuffer logits(size_t(c.vocab_size) * sizeof(float));
  CudaSampler sampler(backend.stream());
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  Greedy out;

  Batch prefill;
  for (int p = 0; p < int(prompt.size()); ++p) prefill.add(seqs, 0, p, prompt[size_t(p)], p + 1 == int(prompt.size()));
  forward.forward(cache, prefill.tokens.data(), prefill.finish(seqs), prefill.logits_rows, logits.as<float>());
  out.prompt_logits = to_host<float>(logits.data(), size_t(c.vocab_size));
  for (int i = 0; i < max_tokens; ++i) {
    const int32_t next = sampler.sample(logits.as<float>(), c.vocab_size, {&greedy, 1}, std::vector<uint64_t>{0},
                                        std::vector<uint64_t>{uint64_t(i)})[0];
    out.tokens.push_back(next);
    if (i + 1 == max_tokens) break;
    Batch step;
    step.add(seqs, 0, int(prompt.size()) + i, next, true);
    forward.forward(cache, step.tokens.data(), step.finish(seqs), step.logits_rows, logits.as<float>());
  }
  return out;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return a.size() == b.size() ? worst : INFINITY;
}

class CudaForward : public CudaTest {};

TEST_F(CudaForward, Stories260KGreedyTokensAndLogitsMatchGolden) {
  const Model host = load_model(data_path("stories260K/stories260K.bin"));
  const DeviceModel model = upload_model(host);
  const auto golden = read_json(data_path("stories260K/golden.json"));
  for (size_t i = 0; i < golden["cases"].size(); ++i) {
    const auto& c = golden["cases"][i];
    const Greedy g = generate(model, c["prompt_ids"].get<std::vector<int32_t>>(), 64);
    EXPECT_EQ(g.tokens, c["greedy_ids"].get<std::vector<int32_t>>()) << "case " << i;
    const auto want = read_f32(data_path("stories260K/" + c["last_logits_file"].get<std::string>()));
    EXPECT_LT(max_abs_diff(g.prompt_logits, want), 1e-4f) << "case " << i;
  }
}

// Same tolerance argument as tests/integration/test_golden.cpp.
TEST_F(CudaForward, SmolLM2GreedyTokensAndLogitsMatchGolden) {
  const std::string path = std::string(TIDAL_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "run tools/setup_model.sh to install SmolLM2";
  const Model host = load_model(path);
  const DeviceModel model = upload_model(host);
  const auto golden = read_json(data_path("smollm2/golden.json"));
  for (size_t i = 0; i < golden["cases"].size(); ++i) {
    const auto& c = golden["cases"][i];
    const Greedy g = generate(model, c["prompt_ids"].get<std::vector<int32_t>>(), 32);
    EXPECT_EQ(g.tokens, c["greedy_ids"].get<std::vector<int32_t>>()) << "case " << i;
    const auto want = read_f32(data_path("smollm2/" + c["last_logits_file"].get<std::string>()));
    EXPECT_LT(max_abs_diff(g.prompt_logits, want), 1e-3f) << "case " << i;
  }
}

// Three prompts prefilled in one batch give the same logits, bit for bit, as
// each prefilled alone and as a prefill in chunks of 3.
TEST_F(CudaForward, WholeForwardIsBatchInvariant) {
  const Model host = load_model(data_path("stories260K/stories260K.bin"));
  const DeviceModel model = upload_model(host);
  const int vocab = model.config.vocab_size;
  const std::vector<std::vector<int32_t>> prompts = {{1, 403, 407, 261, 378}, {1, 20, 30, 40, 50, 60, 70, 80, 90, 100},
                                                     {1, 7}};
  const Sequences seqs(3, 32);
  KvCacheShape shape{model.config.n_layers, model.config.n_kv_heads, model.config.head_dim, 16, 3 * seqs.blocks_per_seq};
  CudaBackend backend;
  DeviceForward forward(model, backend);
  DeviceBuffer logits(3 * size_t(vocab) * sizeof(float));

  CudaKvCache together(shape);
  Batch all;
  for (int s = 0; s < 3; ++s)
    for (int p = 0; p < int(prompts[size_t(s)].size()); ++p)
      all.add(seqs, s, p, prompts[size_t(s)][size_t(p)], p + 1 == int(prompts[size_t(s)].size()));
  forward.forward(together, all.tokens.data(), all.finish(seqs), all.logits_rows, logits.as<float>());
  const std::vector<float> batched = to_host<float>(logits.data(), 3 * size_t(vocab));

  for (int chunk : {100, 3}) {
    CudaKvCache cache(shape);
    for (int s = 0; s < 3; ++s) {
      const auto& prompt = prompts[size_t(s)];
      for (int p0 = 0; p0 < int(prompt.size()); p0 += chunk) {
        Batch b;
        const int p1 = std::min(p0 + chunk, int(prompt.size()));
        for (int p = p0; p < p1; ++p) b.add(seqs, s, p, prompt[size_t(p)], p + 1 == int(prompt.size()));
        forward.forward(cache, b.tokens.data(), b.finish(seqs), b.logits_rows, logits.as<float>());
      }
      EXPECT_TRUE(same_bits(to_host<float>(logits.data(), size_t(vocab)).data(), batched.data() + s * vocab,
                            size_t(vocab)))
          << "prompt " << s << " chunk " << chunk;
    }
  }
}

}  // namespace
}  // namespace tidal::cuda::test
