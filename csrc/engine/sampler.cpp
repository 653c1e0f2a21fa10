#include "engine/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <ranges>
#include <utility>

namespace tidal {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A token still in the running, with its (unnormalized) probability.
struct Candidate {
  float logit;
  float prob;
  int32_t id;
};

// Most likely first; equal logits by lowest id, so every order is total and
// the draw is reproducible.
bool more_likely(const Candidate& a, const Candidate& b) {
  return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
}

// Candidates in most-likely-first order without sorting the vocabulary.
// One pass sorts them into buckets of nearly equal probability (16 per power
// of two), keeping only each bucket's size and mass; a bucket's members are
// gathered and sorted exactly only when a walk stops inside it. Walks from
// the front (top_p, min_p, the draw) thus cost a few linear passes and small
// sorts. Probabilities must lie in [0, 1].
class ProbabilityOrder {
 public:
  // `storage` holds the gathered buckets at their final positions.
  ProbabilityOrder(const std::vector<Candidate>& candidates, std::vector<Candidate>* storage)
      : candidates_(candidates),
        start_(kBuckets + 1, 0),
        mass_(kBuckets, 0.0),
        sorted_(kBuckets, false),
        order_(*storage) {
    for (const Candidate& c : candidates) {
      ++start_[bucket(c.prob) + 1];
      mass_[bucket(c.prob)] += c.prob;
      max_prob_ = std::max(max_prob_, c.prob);
    }
    for (int b = 0; b < kBuckets; ++b) start_[b + 1] += start_[b];
    order_.resize(candidates.size());
  }

  float max_prob() const { return max_prob_; }
  size_t size() const { return order_.size(); }

  const Candidate& operator[](size_t i) {
    const int b = int(std::upper_bound(start_.begin(), start_.end(), uint32_t(i)) - start_.begin()) - 1;
    sort_bucket(b);
    return order_[i];
  }

  // The smallest k whose first k candidates hold mass >= target (> target
  // when `strict`), or size() when rounding leaves the total short of it.
  size_t prefix_reaching(double target, bool strict) {
    auto reached = [&](double m) { return strict ? m > target : m >= target; };
    double mass = 0.0;
    for (int b = 0; b < kBuckets; ++b) {
      if (!reached(mass + mass_[b])) {
        mass += mass_[b];
        continue;
      }
      sort_bucket(b);
      for (uint32_t i = start_[b]; i < start_[b + 1]; ++i) {
        mass += order_[i].prob;
        if (reached(mass)) return i + 1;
      }
    }
    return size();
  }

  // Mass of the first k candidates.
  double prefix_mass(size_t k) {
    double mass = 0.0;
    for (int b = 0; b < kBuckets && start_[b] < k; ++b) {
      if (start_[b + 1] <= k) {
        mass += mass_[b];
        continue;
      }
      sort_bucket(b);
      for (uint32_t i = start_[b]; i < k; ++i) mass += order_[i].prob;
    }
    return mass;
  }

  // How many leading candidates have probability >= p.
  size_t count_at_least(float p) {
    const int b = bucket(p);
    sort_bucket(b);
    uint32_t i = start_[b];
    while (i < start_[b + 1] && order_[i].prob >= p) ++i;
    return i;
  }

 private:
  // 1.0f's bit pattern; below it, a float's bits fall as its value does.
  static constexpr uint32_t kOneBits = 0x3f800000;
  static constexpr int kShift = 19;  // keep 4 mantissa bits: 16 buckets per octave
  static constexpr int kBuckets = (kOneBits >> kShift) + 1;

  static int bucket(float p) {
    const uint32_t bits = std::bit_cast<uint32_t>(p);
    return bits >= kOneBits ? 0 : int((kOneBits - bits) >> kShift);
  }

  void sort_bucket(int b) {
    if (sorted_[b] || start_[b] == start_[b + 1]) return;
    uint32_t next = start_[b];
    for (const Candidate& c : candidates_)
      if (bucket(c.prob) == b) order_[next++] = c;
    std::sort(order_.begin() + start_[b], order_.begin() + start_[b + 1], more_likely);
    sorted_[b] = true;
  }

  const std::vector<Candidate>& candidates_;
  float max_prob_ = 0.0f;
  std::vector<uint32_t> start_;  // bucket b holds order_[start_[b], start_[b + 1])
  std::vector<double> mass_;
  std::vector<bool> sorted_;
  std::vector<Candidate>& order_;
};

// Applies OpenAI presence/frequency penalties to the tokens generated so far.
// Returns the original logits of the tokens it changed.
std::vector<std::pair<int32_t, float>> apply_penalties(std::span<float> logits, const SamplingParams& params,
                                                       std::span<const int32_t> output_tokens,
                                                       std::span<const int32_t> prompt_tokens) {
  std::vector<std::pair<int32_t, float>> originals;
  const bool additive = params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f;
  const bool repetition = params.repetition_penalty != 1.0f;
  if (!additive && !repetition) return originals;
  // Every distinct token seen, each with how often the output holds it.
  std::vector<std::pair<int32_t, int>> seen;
  for (int32_t t : output_tokens) seen.emplace_back(t, 1);
  if (repetition) {
    for (int32_t t : prompt_tokens) seen.emplace_back(t, 0);
  }
  std::sort(seen.begin(), seen.end());
  for (size_t i = 0; i < seen.size();) {
    const int32_t t = seen[i].first;
    int in_output = 0;
    for (; i < seen.size() && seen[i].first == t; ++i) in_output += seen[i].second;
    if (t < 0 || size_t(t) >= logits.size()) continue;
    originals.emplace_back(t, logits[t]);
    float& l = logits[t];
    if (repetition) l = l > 0.0f ? l / params.repetition_penalty : l * params.repetition_penalty;
    if (in_output > 0) l -= params.frequency_penalty * float(in_output) + params.presence_penalty;
  }
  return originals;
}

// A row is a distribution only when it holds no NaN and its largest value is
// finite: NaN breaks every comparison (sorting with it is undefined
// behaviour) and an infinite or -inf maximum leaves nothing to normalize.
// Each way of choosing a token checks this in the pass it makes anyway.
bool is_distribution(bool saw_nan, float max_logit) { return !saw_nan && std::isfinite(max_logit); }

// -1 when the row is no distribution.
int32_t argmax(std::span<const float> logits) {
  size_t best = 0;
  bool nan = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    nan |= std::isnan(logits[i]);
    if (logits[i] > logits[best]) best = i;  // strict: the lowest id among ties
  }
  return is_distribution(nan, logits[best]) ? int32_t(best) : -1;
}

// The tokens top_k allows, with probabilities exp((logit - max) / T); false
// when the row is no distribution.
bool tempered_candidates(std::span<const float> logits, float temperature, int top_k, std::vector<Candidate>* out) {
  const int vocab = int(logits.size());
  std::vector<Candidate>& c = *out;
  bool nan = false;
  // A NaN is noted and ranked as -inf, so that ordering stays defined.
  auto as_candidate = [&](int32_t id) {
    const bool is_nan = std::isnan(logits[id]);
    nan |= is_nan;
    return Candidate{is_nan ? -std::numeric_limits<float>::infinity() : logits[id], 0.0f, id};
  };
  float max_logit = -std::numeric_limits<float>::infinity();
  if (top_k > 0 && top_k < vocab) {
    c.resize(top_k);
    std::ranges::partial_sort_copy(std::views::iota(0, vocab) | std::views::transform(as_candidate), c,
                                   more_likely);
    max_logit = c[0].logit;
  } else {
    c.resize(vocab);
    for (int32_t id = 0; id < vocab; ++id) {
      c[id] = as_candidate(id);
      max_logit = std::max(max_logit, c[id].logit);
    }
  }
  if (!is_distribution(nan, max_logit)) return false;
  const float inv_t = 1.0f / temperature;
  for (Candidate& x : c) x.prob = std::exp((x.logit - max_logit) * inv_t);
  return true;
}

// Samples from the tempered, filtered distribution. Candidates are walked
// most-likely-first: top_p and min_p keep a prefix of that order, and the
// inverse-CDF draw over it maps u to the same token even when tiny numerical
// differences between batches perturb the unlikely tail. -1 when the row is
// no distribution.
int32_t sample_random(std::span<const float> logits, const SamplingParams& params, double u) {
  // Vocabulary-sized buffers, reused: fresh ones would cost page faults on every token.
  thread_local std::vector<Candidate> candidates, ordered;
  if (!tempered_candidates(logits, params.temperature, params.top_k, &candidates)) return -1;
  ProbabilityOrder order(candidates, &ordered);
  size_t keep = order.size();
  if (params.top_p < 1.0f) {
    keep = order.prefix_reaching(double(params.top_p) * order.prefix_mass(order.size()), false);
  }
  if (params.min_p > 0.0f) {
    keep = std::min(keep, order.count_at_least(params.min_p * order.max_prob()));
  }
  // The most likely token always survives, even for min_p > 1.
  keep = std::max<size_t>(keep, 1);
  const size_t drawn = order.prefix_reaching(u * order.prefix_mass(keep), true);
  return order[std::min(drawn, keep) - 1].id;
}

}  // namespace

double uniform_from(uint64_t seed, uint64_t step) {
  const uint64_t bits = splitmix64(splitmix64(seed) ^ splitmix64(step ^ 0x5851f42d4c957f2dull));
  return double(bits >> 11) * 0x1p-53;
}

SampleResult sample_token(std::span<float> logits, const SamplingParams& params,
                          std::span<const int32_t> output_tokens, uint64_t seed, uint64_t step,
                          std::span<const int32_t> prompt_tokens) {
  SampleResult result;
  const auto originals = apply_penalties(logits, params, output_tokens, prompt_tokens);
  if (params.temperature < 1e-5f) {
    result.token = argmax(logits);
  } else {
    result.token = sample_random(logits, params, uniform_from(seed, step));
  }
  // Penalties leave NaN and infinities as they are, so a row that passed
  // holds a distribution without them too.
  if (result.token < 0 || params.logprobs < 0) return result;

  // Log-probabilities are reported for the model's own distribution, before
  // penalties and temperature (as vLLM's default), so take them from the raw logits.
  for (const auto& [id, original] : originals) logits[id] = original;
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(l - max_logit);
  const double log_normalizer = max_logit + std::log(sum);
  result.logprob = float(double(logits[result.token]) - log_normalizer);
  if (params.logprobs > 0) {
    const int k = std::min<int>(params.logprobs, int(logits.size()));
    std::vector<Candidate> top(k);
    auto as_candidate = [&](int32_t id) { return Candidate{logits[id], 0.0f, id}; };
    std::ranges::partial_sort_copy(std::views::iota(0, int(logits.size())) | std::views::transform(as_candidate), top,
                                   more_likely);
    for (const Candidate& x : top) result.top.push_back({x.id, float(double(x.logit) - log_normalizer)});
  }
  return result;
}

}  // namespace tidal
