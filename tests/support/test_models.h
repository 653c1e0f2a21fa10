// Loads the test models (shipped in tests/data, and the default SmolLM2 GGUF
// installed by tools/setup_model.sh) and runs prompts through the engine.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/cpu_backend.h"
#include "engine/engine.h"
#include "engine/executor.h"
#include "model/loader.h"
#include "model/tokenizer.h"

namespace tidal::test {

inline std::string data_path(const std::string& rel) { return std::string(TIDAL_TEST_DATA) + "/" + rel; }
inline std::string smollm2_path() { return std::string(TIDAL_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"; }

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

inline std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  in.seekg(0, std::ios::end);
  std::vector<float> v(size_t(in.tellg()) / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  return v;
}

// A model with everything needed to run it on the CPU backend.
struct TestModel {
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<CpuBackend> backend;
};

inline TestModel load_test_model(const std::string& model_path, const std::string& tokenizer_path, int threads = 2) {
  TestModel m;
  m.pool = std::make_unique<ThreadPool>(threads);
  m.model = std::make_unique<Model>(load_model(model_path));
  m.tokenizer = load_tokenizer(tokenizer_path);
  m.backend = std::make_unique<CpuBackend>(*m.pool);
  return m;
}

inline TestModel load_stories() {
  return load_test_model(data_path("stories260K/stories260K.bin"), data_path("stories260K/tok512.model"));
}

struct Generated {
  std::vector<int32_t> tokens;
  std::string text;
  std::string finish;
};

// Runs every request to completion on `engine` as one continuous batch and
// returns every choice's output: requests in the given order, choices of one
// request in index order.
inline std::vector<Generated> run_all(LLMEngine& engine, std::vector<Request> requests) {
  std::vector<std::string> ids;
  for (Request& r : requests) {
    ids.push_back(r.id);
    engine.add_request(std::move(r));
  }
  std::map<std::string, std::map<int, Generated>> by_id;
  while (engine.has_unfinished()) {
    for (const RequestOutput& out : engine.step()) {
      for (const CompletionDelta& d : out.deltas) {
        Generated& g = by_id[out.request_id][d.index];
        g.tokens.insert(g.tokens.end(), d.token_ids.begin(), d.token_ids.end());
        g.text += d.text;
        if (d.finish) g.finish = finish_reason_name(*d.finish);
      }
    }
  }
  std::vector<Generated> result;
  for (const std::string& id : ids)
    for (auto& [index, g] : by_id[id]) result.push_back(g);
  return result;
}

inline Request greedy_request(const std::string& id, std::vector<int32_t> prompt, int max_tokens) {
  Request r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0.0f;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

// The last-position logits of every prompt, from one batched prefill step
// (several sequences, so a pipeline cuts it into micro-batches).
inline std::vector<std::vector<float>> prefill_logits(Executor& executor, const std::vector<Request>& requests, int vocab) {
  constexpr int kBlock = 16;
  std::vector<Sequence> seqs(requests.size());
  int next_block = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    Sequence& s = seqs[i];
    s.tokens = requests[i].prompt;
    s.prompt_len = int(s.tokens.size());
    for (int b = 0; b < (s.prompt_len + kBlock - 1) / kBlock; ++b) s.blocks.blocks.push_back(next_block++);
  }
  executor.allocate_kv_cache(next_block, kBlock);
  SchedulerOutput step;
  for (Sequence& s : seqs) step.scheduled.push_back({&s, s.prompt_len, true});
  const std::vector<float>& logits = executor.run(step);
  std::vector<std::vector<float>> rows;
  for (size_t i = 0; i < requests.size(); ++i) {
    rows.emplace_back(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
  }
  return rows;
}

// The golden prompts of tests/data/<dir>/golden.json as greedy requests of
// max_tokens, and their greedy continuations. SmolLM2's prompts may hold
// chat-template special tokens and get no BOS.
struct Golden {
  std::vector<Request> requests;
  std::vector<std::vector<int32_t>> greedy;
};

inline Golden load_golden(const Tokenizer& tok, const std::string& dir, bool smollm2, int max_tokens) {
  const auto golden = read_json(data_path(dir + "/golden.json"));
  Golden g;
  for (size_t i = 0; i < golden["cases"].size(); ++i) {
    const auto& c = golden["cases"][i];
    const std::string prompt = c["prompt"];
    const std::vector<int32_t> ids = smollm2 ? tok.encode(prompt, false, true) : tok.encode(prompt, true);
    g.requests.push_back(greedy_request(std::to_string(i), ids, max_tokens));
    g.greedy.push_back(c["greedy_ids"].get<std::vector<int32_t>>());
  }
  return g;
}

inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

inline EngineConfig small_engine_config(int num_blocks = 256) {
  EngineConfig c;
  c.num_kv_blocks = num_blocks;
  c.block_size = 16;
  return c;
}

}  // namespace tidal::test
