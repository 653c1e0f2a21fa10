// Weights that make the model's logits NaN for some sequences: each request
// holding one fails alone (RequestOutput::error, every choice ended) at
// prefill or in the middle of decoding, and every other request in the batch
// generates exactly what it generates alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "model/quantize_matrix.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

constexpr int kMaxTokens = 24;

const std::vector<std::string> kPrompts = {
    "Once upon a time",
    "Lily and Tom went to the park. They saw a big dog",
    "The little bird was sad because",
    "Sam liked to eat apples",
    "There was a big red car",
    "The cat and the dog were friends. Every morning they",
    "Mom said"};

// Unties stories260K's embedding from its classifier and sets the embedding
// row of `poisoned` to NaN: from the first position holding that token on, a
// sequence's hidden states (so all its logits) are NaN; other sequences and
// the classifier are untouched.
void poison_embedding(Model& model, int32_t poisoned) {
  const int vocab = model.config.vocab_size;
  const int dim = model.config.dim;
  auto embedding = std::make_unique<OwnedMatrix>();
  embedding->bytes.resize(size_t(vocab) * dim * sizeof(float));
  float* rows = reinterpret_cast<float*>(embedding->bytes.data());
  std::copy_n(reinterpret_cast<const float*>(model.token_embedding.data), size_t(vocab) * dim, rows);
  std::fill_n(rows + size_t(poisoned) * dim, dim, std::numeric_limits<float>::quiet_NaN());
  embedding->view = {DType::F32, vocab, dim, embedding->bytes.data()};
  model.config.tied_embeddings = false;
  model.token_embedding = embedding->view;
  model.storage.push_back(std::move(embedding));
}

bool holds(const std::vector<int32_t>& tokens, int32_t id) {
  return std::find(tokens.begin(), tokens.end(), id) != tokens.end();
}

struct Outcome {
  std::map<int, Generated> choices;
  std::string error;
  bool finished = false;
};

// Runs the requests as one continuous batch; what each one delivered.
std::map<std::string, Outcome> run_batch(LLMEngine& engine, std::vector<Request> requests) {
  for (Request& r : requests) engine.add_request(std::move(r));
  std::map<std::string, Outcome> by_id;
  while (engine.has_unfinished()) {
    for (const RequestOutput& out : engine.step()) {
      Outcome& o = by_id[out.request_id];
      EXPECT_FALSE(o.finished) << out.request_id << " had output after it finished";
      for (const CompletionDelta& d : out.deltas) {
        Generated& g = o.choices[d.index];
        g.tokens.insert(g.tokens.end(), d.token_ids.begin(), d.token_ids.end());
        if (d.finish) g.finish = finish_reason_name(*d.finish);
      }
      if (!out.error.empty()) o.error = out.error;
      o.finished = out.finished;
      EXPECT_TRUE(out.error.empty() || out.finished) << out.request_id;
    }
  }
  return by_id;
}

void expect_failed(const Outcome& o, int n, const std::string& id) {
  EXPECT_TRUE(o.finished) << id;
  EXPECT_FALSE(o.error.empty()) << id;
  ASSERT_EQ(int(o.choices.size()), n) << id;
  for (const auto& [index, g] : o.choices) EXPECT_EQ(g.finish, "abort") << id << " choice " << index;
}

Request sampled(const std::string& id, std::vector<int32_t> prompt, int n) {
  Request r = greedy_request(id, std::move(prompt), kMaxTokens);
  r.sampling.temperature = 0.8f;
  r.sampling.seed = 11;
  r.sampling.n = n;
  return r;
}

TEST(NanLogits, FailTheirRequestAloneAndTheBatchGoesOn) {
  TestModel m = load_stories();
  std::vector<Request> greedy;
  for (size_t i = 0; i < kPrompts.size(); ++i)
    greedy.push_back(greedy_request(std::to_string(i), m.tokenizer->encode(kPrompts[i], true), kMaxTokens));
  std::vector<std::vector<int32_t>> clean;  // greedy output of each prompt, alone, on the clean model
  for (const Request& r : greedy) {
    LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
    clean.push_back(run_all(engine, {r})[0].tokens);
  }

  // The poisoned token: one that prompt `victim` generates a few tokens in
  // (so it fails mid-decode) and that at least three other prompts never
  // see (they must come through untouched).
  int32_t poisoned = -1;
  size_t victim = 0, at = 0;
  std::vector<size_t> untouched;
  for (size_t v = 0; v < greedy.size() && poisoned < 0; ++v) {
    for (size_t k = 1; k + 1 < clean[v].size() && poisoned < 0; ++k) {
      const int32_t t = clean[v][k];
      if (holds(greedy[v].prompt, t) || std::find(clean[v].begin(), clean[v].begin() + k, t) != clean[v].begin() + k)
        continue;
      untouched.clear();
      for (size_t i = 0; i < greedy.size(); ++i)
        if (!holds(greedy[i].prompt, t) && !holds(clean[i], t)) untouched.push_back(i);
      if (untouched.size() < 3) continue;
      poisoned = t;
      victim = v;
      at = k;
    }
  }
  ASSERT_GE(poisoned, 0) << "no token fits: change the prompts";
  poison_embedding(*m.model, poisoned);

  // Prompts that hold the poisoned token fail at prefill, under every way
  // of sampling: greedy with logprobs, and n = 3 draws with top-k, top-p,
  // min-p, a penalty and logprobs.
  std::vector<int32_t> poisoned_prompt = greedy[untouched[0]].prompt;
  poisoned_prompt.insert(poisoned_prompt.begin() + 2, poisoned);
  Request prefill_greedy = greedy_request("prefill-greedy", poisoned_prompt, kMaxTokens);
  prefill_greedy.sampling.logprobs = 2;
  Request prefill_sampled = sampled("prefill-sampled", poisoned_prompt, 3);
  prefill_sampled.sampling.top_k = 20;
  prefill_sampled.sampling.top_p = 0.9f;
  prefill_sampled.sampling.min_p = 0.05f;
  prefill_sampled.sampling.presence_penalty = 0.5f;
  prefill_sampled.sampling.logprobs = 1;
  // A sampled request that never sees it, to compare with itself alone.
  const Request good_sampled = sampled("good-sampled", greedy[untouched[1]].prompt, 2);

  std::vector<Request> batch = {prefill_greedy, greedy[victim], prefill_sampled, good_sampled};
  for (size_t i : untouched) batch.push_back(greedy[i]);
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  const std::map<std::string, Outcome> out = run_batch(engine, batch);

  expect_failed(out.at("prefill-greedy"), 1, "prefill-greedy");
  EXPECT_TRUE(out.at("prefill-greedy").choices.at(0).tokens.empty());
  expect_failed(out.at("prefill-sampled"), 3, "prefill-sampled");
  for (const auto& [index, g] : out.at("prefill-sampled").choices) EXPECT_TRUE(g.tokens.empty());
  // The victim delivers its clean tokens up to the poisoned one, then fails.
  const Outcome& v = out.at(greedy[victim].id);
  expect_failed(v, 1, "victim");
  EXPECT_EQ(v.choices.at(0).tokens, std::vector<int32_t>(clean[victim].begin(), clean[victim].begin() + at + 1));

  for (size_t i : untouched) {
    const Outcome& o = out.at(greedy[i].id);
    EXPECT_TRUE(o.error.empty()) << "prompt " << i;
    ASSERT_EQ(o.choices.size(), 1u);
    EXPECT_EQ(o.choices.at(0).tokens, clean[i]) << "prompt " << i;
    EXPECT_EQ(o.choices.at(0).finish, "length");
  }
  LLMEngine alone(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  const std::vector<Generated> expected = run_all(alone, {good_sampled});
  const Outcome& g = out.at("good-sampled");
  EXPECT_TRUE(g.error.empty());
  ASSERT_EQ(g.choices.size(), 2u);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(g.choices.at(i).tokens, expected[i].tokens) << "choice " << i;

  // Every block is back, and requests reusing them (and the prefix cache
  // the failed ones filled) are served as before.
  EXPECT_FALSE(engine.has_unfinished());
  EXPECT_EQ(engine.stats().num_used_blocks, 0);
  std::vector<Request> again;
  for (size_t i : untouched) again.push_back(greedy[i]);
  const std::vector<Generated> rerun = run_all(engine, again);
  for (size_t j = 0; j < untouched.size(); ++j) EXPECT_EQ(rerun[j].tokens, clean[untouched[j]]);
}

}  // namespace
}  // namespace tidal::test
