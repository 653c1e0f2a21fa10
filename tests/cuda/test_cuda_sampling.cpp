// Device sampling against the host sampler (engine/sampler.h), which it
// must agree with token for token. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "cuda/cuda_sampler.h"
#include "cuda_test_util.h"
#include "engine/sampler.h"

namespace tidal::cuda::test {
namespace {

class CudaSampling : public CudaTest {};

SamplingParams params(float temperature, int top_k, float top_p, float min_p) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

// Many rows at once, each with its own settings and (seed, step), against
// sample_token row by row. Logits are peaked like a model's (a few large).
TEST_F(CudaSampling, MatchesTheHostSamplerForEverySetting) {
  std::mt19937 rng(31);
  for (int vocab : {7, 512, 32000}) {
    std::vector<SamplingParams> rows;
    for (float t : {0.0f, 0.7f, 1.0f, 1.5f})
      for (int k : {0, 1, 5, 50})
        for (float p : {1.0f, 0.9f, 0.5f})
          for (float m : {0.0f, 0.05f, 0.3f}) rows.push_back(params(t, k, p, m));
    std::vector<float> logits;
    for (size_t r = 0; r < rows.size(); ++r) {
      std::vector<float> row = random_floats(rng, size_t(vocab), -4.0f, 4.0f);
      for (int i = 0; i < 3; ++i) row[rng() % vocab] += 6.0f;
      logits.insert(logits.end(), row.begin(), row.end());
    }
    std::vector<uint64_t> seeds(rows.size()), steps(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) seeds[r] = rng(), steps[r] = r % 17;
    const DeviceBuffer d_logits = to_device(logits);
    CudaSampler sampler(nullptr);
    const std::vector<int32_t> got = sampler.sample(d_logits.as<float>(), vocab, rows, seeds, steps);
    for (size_t r = 0; r < rows.size(); ++r) {
      std::vector<float> row(logits.begin() + long(r * vocab), logits.begin() + long((r + 1) * vocab));
      const int32_t want = sample_token(row, rows[r], {}, seeds[r], steps[r]).token;
      EXPECT_EQ(got[r], want) << "vocab " << vocab << " row " << r << " T=" << rows[r].temperature
                              << " k=" << rows[r].top_k << " p=" << rows[r].top_p << " min_p=" << rows[r].min_p;
    }
  }
}

// Equal logits everywhere: every order question is decided by the lowest id.
TEST_F(CudaSampling, TiesGoToTheLowestIdAsOnTheHost) {
  const int vocab = 1000;
  std::vector<float> logits(static_cast<size_t>(vocab), 0.5f);
  const DeviceBuffer d_logits = to_device(logits);
  CudaSampler sampler(nullptr);
  for (const SamplingParams& p : {params(0.0f, 0, 1.0f, 0.0f), params(1.0f, 3, 1.0f, 0.0f), params(1.0f, 0, 0.01f, 0.0f),
                                  params(1.0f, 0, 1.0f, 0.5f)}) {
    for (uint64_t step = 0; step < 20; ++step) {
      const int32_t got = sampler.sample(d_logits.as<float>(), vocab, {&p, 1}, std::vector<uint64_t>{7},
                                         std::vector<uint64_t>{step})[0];
      std::vector<float> row = logits;
      EXPECT_EQ(got, sample_token(row, p, {}, 7, step).token) << "k=" << p.top_k << " p=" << p.top_p;
    }
  }
}

TEST(CudaSamplerSupport, PenaltiesAndLogprobsStayOnTheHost) {
  SamplingParams p;
  EXPECT_TRUE(CudaSampler::supports(p));
  p.presence_penalty = 0.5f;
  EXPECT_FALSE(CudaSampler::supports(p));
  p = SamplingParams{};
  p.logprobs = 0;
  EXPECT_FALSE(CudaSampler::supports(p));
}

}  // namespace
}  // namespace tidal::cuda::test
