// Continuous batching must not change what a sequence generates: alone or
// in a batch, in chunks, after preemption, from the prefix cache, or forked.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/quantize_matrix.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

const std::vector<std::string> kPrompts = {
    "Once upon a time",
    "Lily and Tom went to the park. They saw a big dog",
    "The little bird was sad because",
    "One day, a boy named Tim found a shiny stone in the garden. He picked it up and",
    "Sam liked to eat apples",
    "There was a big red car",
    "The cat and the dog were friends. Every morning they",
    "Mom said"};

std::vector<Request> greedy_requests(const Tokenizer& tok, int max_tokens) {
  std::vector<Request> rs;
  for (size_t i = 0; i < kPrompts.size(); ++i)
    rs.push_back(greedy_request(std::to_string(i), tok.encode(kPrompts[i], true), max_tokens));
  return rs;
}

std::vector<Generated> one_at_a_time(TestModel& m, const EngineConfig& config, const std::vector<Request>& rs) {
  std::vector<Generated> out;
  for (const Request& r : rs) {
    LLMEngine engine(*m.model, *m.tokenizer, *m.backend, config);
    out.push_back(run_all(engine, {r})[0]);
  }
  return out;
}

void expect_same_tokens(const std::vector<Generated>& a, const std::vector<Generated>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].tokens, b[i].tokens) << "request " << i;
}

void expect_no_leak(const LLMEngine& engine) {
  EXPECT_FALSE(engine.has_unfinished());
  EXPECT_EQ(engine.stats().num_used_blocks, 0);
}

EngineConfig with_kv_dtype(EngineConfig config, DType kv_dtype) {
  config.kv_cache_dtype = kv_dtype;
  return config;
}

// The three batch-invariance properties below hold for either KV cache
// dtype: F16 changes what the cache holds, never how a token's attention
// is reduced.
void expect_batch_equals_one_at_a_time(DType kv_dtype) {
  TestModel m = load_stories();
  const EngineConfig config = with_kv_dtype(small_engine_config(), kv_dtype);
  const auto rs = greedy_requests(*m.tokenizer, 96);
  const auto alone = one_at_a_time(m, config, rs);
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, config);
  expect_same_tokens(run_all(engine, rs), alone);
  expect_no_leak(engine);
}

void expect_chunked_prefill_equals_whole_prefill(DType kv_dtype) {
  TestModel m = load_stories();
  const auto rs = greedy_requests(*m.tokenizer, 40);
  EngineConfig whole = with_kv_dtype(small_engine_config(), kv_dtype);
  EngineConfig chunked = whole;
  chunked.scheduler.max_num_batched_tokens = 7;  // prompts are split into many chunks
  LLMEngine a(*m.model, *m.tokenizer, *m.backend, whole);
  LLMEngine b(*m.model, *m.tokenizer, *m.backend, chunked);
  expect_same_tokens(run_all(a, rs), run_all(b, rs));
  expect_no_leak(b);
}

void expect_preemption_gives_identical_tokens(DType kv_dtype) {
  TestModel m = load_stories();
  const auto rs = greedy_requests(*m.tokenizer, 120);
  LLMEngine roomy(*m.model, *m.tokenizer, *m.backend, with_kv_dtype(small_engine_config(512), kv_dtype));
  // 8 sequences of up to ~140 tokens need ~80 blocks; 16 blocks force
  // repeated preemption while still fitting any single sequence.
  LLMEngine cramped(*m.model, *m.tokenizer, *m.backend, with_kv_dtype(small_engine_config(16), kv_dtype));
  expect_same_tokens(run_all(cramped, rs), run_all(roomy, rs));
  EXPECT_GT(cramped.stats().num_preemptions, 0u);
  expect_no_leak(cramped);
}

TEST(EngineBatching, BatchEqualsOneAtATime) { expect_batch_equals_one_at_a_time(DType::F32); }
TEST(EngineBatching, BatchEqualsOneAtATimeF16Kv) { expect_batch_equals_one_at_a_time(DType::F16); }
TEST(EngineBatching, ChunkedPrefillEqualsWholePrefill) { expect_chunked_prefill_equals_whole_prefill(DType::F32); }
TEST(EngineBatching, ChunkedPrefillEqualsWholePrefillF16Kv) {
  expect_chunked_prefill_equals_whole_prefill(DType::F16);
}
TEST(EngineBatching, PreemptionByRecomputeGivesIdenticalTokens) {
  expect_preemption_gives_identical_tokens(DType::F32);
}
TEST(EngineBatching, PreemptionByRecomputeGivesIdenticalTokensF16Kv) {
  expect_preemption_gives_identical_tokens(DType::F16);
}

TEST(EngineBatching, PrefixCachingOnOffIdenticalAndHits) {
  TestModel m = load_stories();
  // Prompts sharing a 40-token prefix: the later ones reuse its full blocks.
  const std::string shared =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her "
      "friends. One day";
  std::vector<Request> rs;
  for (int i = 0; i < 6; ++i) {
    rs.push_back(greedy_request("p" + std::to_string(i),
                                m.tokenizer->encode(shared + " " + kPrompts[i], true), 32));
  }
  EngineConfig off = small_engine_config();
  off.enable_prefix_caching = false;
  LLMEngine cached(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  LLMEngine plain(*m.model, *m.tokenizer, *m.backend, off);
  // One at a time through the caching engine, so later requests find the
  // blocks the earlier ones left behind.
  std::vector<Generated> with_cache;
  for (const Request& r : rs) with_cache.push_back(run_all(cached, {r})[0]);
  expect_same_tokens(with_cache, run_all(plain, rs));
  const PrefixCacheStats s = cached.stats().prefix;
  EXPECT_GT(s.hits, 0u);
  EXPECT_GE(s.hits, 5u * 16u);  // each of the 5 later prompts reuses at least one full block
  EXPECT_EQ(plain.stats().prefix.hits, 0u);
  expect_no_leak(cached);
}

TEST(EngineBatching, ForkedChoicesShareThePromptCopyOnWrite) {
  TestModel m = load_stories();
  Request r = greedy_request("n", m.tokenizer->encode(kPrompts[1], true), 30);
  r.sampling.n = 3;
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  const auto single = run_all(engine, {greedy_request("one", r.prompt, 30)})[0];
  const auto forked = run_all(engine, {r});
  ASSERT_EQ(forked.size(), 3u);
  for (const Generated& g : forked) EXPECT_EQ(g.tokens, single.tokens);  // greedy: all choices agree
  expect_no_leak(engine);
}

TEST(EngineBatching, SeededSamplingIsBatchIndependent) {
  TestModel m = load_stories();
  std::vector<Request> rs;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    Request r;
    r.id = "s" + std::to_string(i);
    r.prompt = m.tokenizer->encode(kPrompts[i], true);
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = 1000 + i;
    r.sampling.max_tokens = 48;
    r.sampling.ignore_eos = true;
    rs.push_back(r);
  }
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  expect_same_tokens(run_all(engine, rs), one_at_a_time(m, small_engine_config(), rs));
  // n = 2 with a seed: the choices differ from each other but repeat exactly.
  Request two = rs[0];
  two.id = "two";
  two.sampling.n = 2;
  const auto first = run_all(engine, {two});
  const auto again = run_all(engine, {two});
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].tokens, again[0].tokens);
  EXPECT_EQ(first[1].tokens, again[1].tokens);
  EXPECT_NE(first[0].tokens, first[1].tokens);
}

TEST(EngineBatching, StopsOnStopStringsAndMaxTokens) {
  TestModel m = load_stories();
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  Request free_run = greedy_request("a", m.tokenizer->encode("Once upon a time", true), 64);
  const Generated full = run_all(engine, {free_run})[0];
  EXPECT_EQ(full.finish, "length");
  EXPECT_EQ(full.tokens.size(), 64u);
  // Stop at the first occurrence of a word the free run produces.
  const std::string word = "Lily";
  const size_t at = full.text.find(word);
  ASSERT_NE(at, std::string::npos) << full.text;
  Request stopped = free_run;
  stopped.id = "b";
  stopped.sampling.stop = {word};
  const Generated g = run_all(engine, {stopped})[0];
  EXPECT_EQ(g.finish, "stop");
  EXPECT_EQ(g.text, full.text.substr(0, at));
  expect_no_leak(engine);
}

TEST(EngineBatching, AbortFreesBlocksAtOnce) {
  TestModel m = load_stories();
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  for (int i = 0; i < 4; ++i) engine.add_request(greedy_request("x" + std::to_string(i), m.tokenizer->encode(kPrompts[i], true), 100));
  for (int i = 0; i < 5; ++i) engine.step();
  EXPECT_GT(engine.stats().num_used_blocks, 0);
  for (int i = 0; i < 4; ++i) {
    auto out = engine.abort_request("x" + std::to_string(i));
    ASSERT_TRUE(out.has_value());
    EXPECT_TRUE(out->finished);
  }
  EXPECT_FALSE(engine.abort_request("x0").has_value());
  expect_no_leak(engine);
}

// The same kv_cache_bytes holds twice the blocks with F16 K/V.
TEST(EngineBatching, F16KvPoolHoldsTwiceTheBlocksInTheSameMemory) {
  TestModel m = load_stories();
  const ModelConfig& c = m.model->config;
  EngineConfig config = small_engine_config(0);  // sized from kv_cache_bytes
  const size_t f32_token_bytes =
      KvCacheShape{.n_layers = c.n_layers, .n_kv_heads = c.n_kv_heads, .head_dim = c.head_dim}.bytes_per_token();
  config.kv_cache_bytes = 100 * f32_token_bytes * size_t(config.block_size);  // far below the pool's cap
  LLMEngine f32(*m.model, *m.tokenizer, *m.backend, config);
  LLMEngine f16(*m.model, *m.tokenizer, *m.backend, with_kv_dtype(config, DType::F16));
  EXPECT_EQ(f32.stats().kv_cache_dtype, DType::F32);
  EXPECT_EQ(f16.stats().kv_cache_dtype, DType::F16);
  EXPECT_EQ(f32.stats().kv_bytes_per_token, f32_token_bytes);
  EXPECT_EQ(f16.stats().kv_bytes_per_token * 2, f32_token_bytes);
  EXPECT_EQ(f32.stats().num_blocks, 100);
  EXPECT_EQ(f16.stats().num_blocks, 200);
}

TEST(EngineBatching, RejectsKvCacheDtypesOtherThanF32AndF16) {
  TestModel m = load_stories();
  EXPECT_THROW(LLMEngine(*m.model, *m.tokenizer, *m.backend, with_kv_dtype(small_engine_config(), DType::BF16)),
               Error);
}

TEST(EngineBatching, RejectsInvalidRequests) {
  TestModel m = load_stories();
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  Request empty = greedy_request("e", {}, 4);
  EXPECT_THROW(engine.add_request(empty), Error);
  Request oov = greedy_request("o", {1, 99999}, 4);
  EXPECT_THROW(engine.add_request(oov), Error);
  Request too_long = greedy_request("l", std::vector<int32_t>(600, 5), 4);  // context is 512
  EXPECT_THROW(engine.add_request(too_long), Error);
  Request bad_temp = greedy_request("t", {1, 5}, 4);
  bad_temp.sampling.temperature = -1;
  EXPECT_THROW(engine.add_request(bad_temp), Error);
  EXPECT_FALSE(engine.has_unfinished());
}

TEST(EngineBatching, IdsBeyondTheTokenizerAreNeverDrawn) {
  // stories260K with one padding row in its (tied) embedding that would win
  // every greedy step: ten times the row of the first step's best token.
  TestModel m = load_stories();
  const int vocab = m.model->config.vocab_size;
  const int dim = m.model->config.dim;
  const Request probe = greedy_request("probe", m.tokenizer->encode("Once upon a time", true), 1);
  LLMEngine plain(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  const int32_t best = run_all(plain, {probe})[0].tokens[0];
  auto padded = std::make_unique<OwnedMatrix>();
  padded->bytes.resize(size_t(vocab + 1) * dim * sizeof(float));
  float* rows = reinterpret_cast<float*>(padded->bytes.data());
  std::copy_n(reinterpret_cast<const float*>(m.model->token_embedding.data), size_t(vocab) * dim, rows);
  for (int j = 0; j < dim; ++j) rows[size_t(vocab) * dim + j] = 10.0f * rows[size_t(best) * dim + j];
  padded->view = {DType::F32, vocab + 1, dim, padded->bytes.data()};
  ASSERT_EQ(m.model->lm_head.data, m.model->token_embedding.data);
  m.model->config.vocab_size = vocab + 1;
  m.model->token_embedding = m.model->lm_head = padded->view;
  m.model->storage.push_back(std::move(padded));

  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  Request r = greedy_request("r", probe.prompt, 24);
  r.sampling.logprobs = 5;
  const std::vector<Generated> out = run_all(engine, {r});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].tokens.size(), 24u);
  for (int32_t id : out[0].tokens) EXPECT_LT(id, vocab);
  EXPECT_EQ(out[0].finish, "length");
}

}  // namespace
}  // namespace tidal::test
