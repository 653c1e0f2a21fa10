#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <utility>

namespace tidal {
namespace {

std::vector<float> random_logits(int vocab, uint32_t seed, float scale = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> l(vocab);
  for (float& x : l) x = dist(rng);
  return l;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature = 1.0) {
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp((logits[i] - m) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

int32_t sample(std::vector<float> logits, const SamplingParams& params, uint64_t seed, uint64_t step,
               std::span<const int32_t> output = {}) {
  return sample_token(logits, params, output, seed, step).token;
}

SamplingParams with_temperature(float t) {
  SamplingParams p;
  p.temperature = t;
  return p;
}

// Pearson chi-square of `draws` samples against `expected` probabilities.
double chi_square(const std::vector<int>& counts, const std::vector<double>& expected, int draws) {
  double chi = 0.0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = expected[i] * draws;
    if (e == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    chi += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi;
}

std::vector<int> histogram(const std::vector<float>& logits, const SamplingParams& params, int draws) {
  std::vector<int> counts(logits.size(), 0);
  for (int step = 0; step < draws; ++step) ++counts[sample(logits, params, 42, uint64_t(step))];
  return counts;
}

TEST(Sampler, GreedyPicksArgmaxLowestIdOnTies) {
  EXPECT_EQ(sample({0.1f, 2.0f, -1.0f, 1.5f}, with_temperature(0.0f), 1, 0), 1);
  EXPECT_EQ(sample({0.5f, 3.0f, 3.0f, 1.0f}, with_temperature(0.0f), 1, 0), 1);
  EXPECT_EQ(sample({1.0f, 3.0f, 2.0f}, with_temperature(1e-7f), 1, 0), 1);
}

TEST(Sampler, UniformFromIsStatelessAndInRange) {
  EXPECT_EQ(uniform_from(7, 3), uniform_from(7, 3));
  EXPECT_NE(uniform_from(7, 3), uniform_from(7, 4));
  EXPECT_NE(uniform_from(7, 3), uniform_from(8, 3));
  double sum = 0.0;
  for (uint64_t i = 0; i < 100000; ++i) {
    const double u = uniform_from(123, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);
}

TEST(Sampler, SameSeedAndStepGiveSameToken) {
  const std::vector<float> logits = random_logits(1000, 1, 1.0f);
  const SamplingParams params = with_temperature(1.0f);
  std::set<int32_t> seen;
  for (uint64_t step = 0; step < 50; ++step) {
    const int32_t t = sample(logits, params, 99, step);
    EXPECT_EQ(sample(logits, params, 99, step), t);
    seen.insert(t);
  }
  // Different steps draw differently from a flat distribution.
  EXPECT_GT(seen.size(), 20u);
}

TEST(Sampler, TemperatureOneMatchesSoftmax) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f, 1.5f, -0.5f, 0.2f};
  constexpr int kDraws = 20000;
  // 7 degrees of freedom: P(chi2 > 24.3) = 0.001.
  EXPECT_LT(chi_square(histogram(logits, with_temperature(1.0f), kDraws), softmax(logits), kDraws), 24.3);
}

TEST(Sampler, TemperatureScalesDistribution) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f, 1.5f, -0.5f, 0.2f};
  constexpr int kDraws = 20000;
  for (float t : {0.5f, 2.0f}) {
    EXPECT_LT(chi_square(histogram(logits, with_temperature(t), kDraws), softmax(logits, t), kDraws), 24.3)
        << "temperature " << t;
  }
}

TEST(Sampler, WiderVocabularyWithTiesMatchesSoftmax) {
  // Many tokens of nearly equal probability, some exactly tied.
  std::vector<float> logits = random_logits(64, 3, 1.0f);
  for (int i = 0; i < 8; ++i) logits[40 + i] = logits[i];
  constexpr int kDraws = 40000;
  // 63 degrees of freedom: P(chi2 > 103.4) = 0.001.
  EXPECT_LT(chi_square(histogram(logits, with_temperature(1.0f), kDraws), softmax(logits), kDraws), 103.4);
}

TEST(Sampler, TopKRestrictsToKMostLikely) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f, 1.5f, -0.5f, 0.2f};
  SamplingParams params = with_temperature(1.0f);
  params.top_k = 3;
  std::vector<double> expected = softmax(logits);
  const std::set<int> kept = {0, 2, 5};
  double mass = 0.0;
  for (int i : kept) mass += expected[i];
  for (size_t i = 0; i < expected.size(); ++i) expected[i] = kept.count(int(i)) ? expected[i] / mass : 0.0;
  constexpr int kDraws = 20000;
  // 2 degrees of freedom: P(chi2 > 13.8) = 0.001.
  EXPECT_LT(chi_square(histogram(logits, params, kDraws), expected, kDraws), 13.8);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  for (uint32_t s = 0; s < 20; ++s) {
    const std::vector<float> logits = random_logits(49152, s);
    const int32_t greedy = sample(logits, with_temperature(0.0f), s, 0);
    SamplingParams k1 = with_temperature(1.0f);
    k1.top_k = 1;
    SamplingParams p0 = with_temperature(1.0f);
    p0.top_p = 1e-6f;
    for (uint64_t step = 0; step < 5; ++step) {
      EXPECT_EQ(sample(logits, k1, s, step), greedy);
      EXPECT_EQ(sample(logits, p0, s, step), greedy);
    }
  }
}

TEST(Sampler, TopPKeepsSmallestNucleus) {
  const std::vector<float> logits = random_logits(49152, 5, 4.0f);
  const std::vector<double> p = softmax(logits);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  std::set<int32_t> nucleus;
  double mass = 0.0;
  for (int32_t id : order) {
    nucleus.insert(id);
    mass += p[id];
    if (mass >= 0.8) break;
  }
  SamplingParams params = with_temperature(1.0f);
  params.top_p = 0.8f;
  std::set<int32_t> seen;
  for (uint64_t step = 0; step < 1000; ++step) {
    const int32_t t = sample(logits, params, 11, step);
    ASSERT_TRUE(nucleus.count(t)) << "token " << t << " outside the nucleus";
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), nucleus.size() / 2);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  // p = [0.5, 0.3, 0.15, 0.05]; min_p 0.2 drops everything under 0.1.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams params = with_temperature(1.0f);
  params.min_p = 0.2f;
  constexpr int kDraws = 20000;
  const std::vector<double> expected = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0};
  // 2 degrees of freedom.
  EXPECT_LT(chi_square(histogram(logits, params, kDraws), expected, kDraws), 13.8);
}

TEST(Sampler, PenaltiesLowerRepeatedTokens) {
  const std::vector<int32_t> output = {1, 1, 2};
  SamplingParams params = with_temperature(0.0f);
  params.frequency_penalty = 0.1f;
  std::vector<float> logits = {1.0f, 1.15f, 0.5f};
  EXPECT_EQ(sample_token(logits, params, output, 0, 3).token, 0);  // 1.15 - 2 * 0.1 = 0.95
  EXPECT_FLOAT_EQ(logits[1], 0.95f);
  EXPECT_FLOAT_EQ(logits[2], 0.4f);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);

  params.frequency_penalty = 0.0f;
  params.presence_penalty = 0.5f;
  logits = {1.0f, 1.4f, 0.5f};
  EXPECT_EQ(sample_token(logits, params, output, 0, 3).token, 0);  // 1.4 - 0.5 = 0.9
  EXPECT_FLOAT_EQ(logits[1], 0.9f);
  EXPECT_FLOAT_EQ(logits[2], 0.0f);

  // Negative penalties encourage repetition.
  params.presence_penalty = -1.0f;
  logits = {1.0f, 0.5f, 0.2f};
  EXPECT_EQ(sample_token(logits, params, output, 0, 3).token, 1);
}

TEST(Sampler, RepetitionPenaltyScalesTokensOfThePromptAndTheOutput) {
  const std::vector<int32_t> prompt = {0, 3};
  const std::vector<int32_t> output = {1};
  SamplingParams params = with_temperature(0.0f);
  params.repetition_penalty = 2.0f;
  std::vector<float> logits = {3.0f, 2.0f, 1.6f, -1.0f};
  // 3 / 2 = 1.5 and 2 / 2 = 1 fall below the unseen 1.6; -1 * 2 = -2.
  EXPECT_EQ(sample_token(logits, params, output, 0, 1, prompt).token, 2);
  EXPECT_FLOAT_EQ(logits[0], 1.5f);
  EXPECT_FLOAT_EQ(logits[1], 1.0f);
  EXPECT_FLOAT_EQ(logits[2], 1.6f);
  EXPECT_FLOAT_EQ(logits[3], -2.0f);
  // Logprobs stay those of the model's own distribution.
  params.logprobs = 0;
  logits = {3.0f, 2.0f, 1.6f, -1.0f};
  const SampleResult r = sample_token(logits, params, output, 0, 1, prompt);
  const double norm = std::log(std::exp(3.0) + std::exp(2.0) + std::exp(1.6) + std::exp(-1.0));
  EXPECT_NEAR(r.logprob, 1.6 - norm, 1e-5);
}

TEST(StopList, CopiesShareOneListAndEmptyStringsAreDropped) {
  const StopList list = std::vector<std::string>{"end", "", "stop"};
  EXPECT_EQ(list.size(), 2u);
  const StopList copy = list;  // what each prompt and each choice holds
  EXPECT_EQ(&*copy.begin(), &*list.begin());
  EXPECT_TRUE(StopList().empty());
  EXPECT_TRUE(StopList({""}).empty());
}

TEST(Sampler, LogprobsComeFromRawLogits) {
  const std::vector<float> raw = random_logits(5000, 9);
  std::vector<double> lp(raw.size());
  {
    const double m = *std::max_element(raw.begin(), raw.end());
    double sum = 0.0;
    for (float x : raw) sum += std::exp(x - m);
    for (size_t i = 0; i < raw.size(); ++i) lp[i] = raw[i] - m - std::log(sum);
  }
  std::vector<int32_t> order(raw.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return raw[a] > raw[b]; });

  SamplingParams params = with_temperature(0.7f);
  params.logprobs = 5;
  params.frequency_penalty = 1.0f;
  // Penalize the most likely tokens: the reported logprob must not see it.
  const std::vector<int32_t> output = {order[0], order[1], order[0]};
  for (uint64_t step = 0; step < 50; ++step) {
    std::vector<float> logits = raw;
    const SampleResult r = sample_token(logits, params, output, 3, step);
    EXPECT_NEAR(r.logprob, lp[r.token], 1e-4);
    ASSERT_EQ(r.top.size(), 5u);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(r.top[i].id, order[i]);
      EXPECT_NEAR(r.top[i].logprob, lp[order[i]], 1e-4);
    }
  }

  // logprobs = 0: only the sampled token's.
  params.logprobs = 0;
  std::vector<float> logits = raw;
  const SampleResult r = sample_token(logits, params, {}, 3, 0);
  EXPECT_TRUE(r.top.empty());
  EXPECT_NEAR(r.logprob, lp[r.token], 1e-4);
}

TEST(Sampler, TopLogprobsBreakTiesByLowestId) {
  SamplingParams params = with_temperature(0.0f);
  params.logprobs = 3;
  std::vector<float> logits = {1.0f, 2.0f, 1.0f, 2.0f, 0.0f};
  const SampleResult r = sample_token(logits, params, {}, 0, 0);
  EXPECT_EQ(r.token, 1);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].id, 1);
  EXPECT_EQ(r.top[1].id, 3);
  EXPECT_EQ(r.top[2].id, 0);
  // More than the vocabulary: all of it.
  params.logprobs = 20;
  logits = {1.0f, 2.0f};
  EXPECT_EQ(sample_token(logits, params, {}, 0, 0).top.size(), 2u);
}

// Rows that hold no distribution give token -1 under every way of choosing
// (greedy, full-vocabulary draw, top-k, top-p, min-p, with and without
// logprobs and penalties) instead of a draw that compared NaN.
TEST(Sampler, RowsWithNanOrNoFiniteMaximumGiveNoToken) {
  constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const std::vector<float> base = random_logits(300, 5);
  std::vector<std::pair<std::string, std::vector<float>>> rows;
  for (int at : {0, 17, 299}) {
    std::vector<float> row = base;
    row[at] = kNan;
    std::string name = "NaN at ";
    name += std::to_string(at);
    rows.emplace_back(name, row);
  }
  rows.emplace_back("all NaN", std::vector<float>(300, kNan));
  rows.emplace_back("all -inf", std::vector<float>(300, -kInf));
  std::vector<float> with_inf = base;
  with_inf[42] = kInf;
  rows.emplace_back("+inf", with_inf);

  std::vector<std::pair<std::string, SamplingParams>> settings;
  settings.emplace_back("greedy", with_temperature(0.0f));
  settings.emplace_back("temperature", with_temperature(0.8f));
  SamplingParams p = with_temperature(1.0f);
  p.top_k = 5;
  settings.emplace_back("top_k", p);
  p = with_temperature(1.0f);
  p.top_p = 0.9f;
  settings.emplace_back("top_p", p);
  p = with_temperature(1.0f);
  p.min_p = 0.1f;
  settings.emplace_back("min_p", p);
  for (int logprobs : {0, 3}) {
    for (float t : {0.0f, 1.0f}) {
      p = with_temperature(t);
      p.logprobs = logprobs;
      p.frequency_penalty = 0.5f;
      std::string name = t > 0.0f ? "drawn, logprobs " : "greedy, logprobs ";
      name += std::to_string(logprobs);
      settings.emplace_back(name, p);
    }
  }

  const std::vector<int32_t> output = {1, 2, 17};
  for (const auto& [row_name, row] : rows) {
    for (const auto& [name, params] : settings) {
      std::vector<float> logits = row;
      const SampleResult r = sample_token(logits, params, output, 7, 3);
      EXPECT_EQ(r.token, -1) << row_name << ", " << name;
      EXPECT_TRUE(r.top.empty()) << row_name << ", " << name;
    }
  }
}

TEST(Sampler, MaskedTokensAtMinusInfinityAreNeverDrawn) {
  std::vector<float> row = random_logits(300, 6);
  for (size_t i = 0; i < row.size(); ++i)
    if (i % 3 != 1) row[i] = -std::numeric_limits<float>::infinity();
  SamplingParams params = with_temperature(1.0f);
  params.logprobs = 2;
  for (uint64_t step = 0; step < 100; ++step) {
    std::vector<float> logits = row;
    const SampleResult r = sample_token(logits, params, {}, 9, step);
    ASSERT_GE(r.token, 0);
    EXPECT_EQ(r.token % 3, 1);
    EXPECT_TRUE(std::isfinite(r.logprob));
    ASSERT_EQ(r.top.size(), 2u);
  }
}

}  // namespace
}  // namespace tidal
