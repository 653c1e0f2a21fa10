#include "cuda/cuda_sampler.h"

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/sampling_kernels.h"
#include "engine/sampler.h"

namespace tidal::cuda {

bool CudaSampler::supports(const SamplingParams& params) {
  return params.presence_penalty == 0.0f && params.frequency_penalty == 0.0f && params.logprobs < 0;
}

std::vector<int32_t> CudaSampler::sample(const float* logits, int vocab, std::span<const SamplingParams> params,
                                         std::span<const uint64_t> seeds, std::span<const uint64_t> steps) {
  const size_t n = params.size();
  if (seeds.size() != n || steps.size() != n) throw Error(ErrorCode::kInvalidArgument, "sample: row count mismatch");
  std::vector<int32_t> tokens(n);
  if (n == 0) return tokens;
  std::vector<SampleRow> rows(n);
  for (size_t i = 0; i < n; ++i) {
    if (!supports(params[i])) throw Error(ErrorCode::kUnsupported, "device sampling without penalties or logprobs only");
    rows[i] = {params[i].temperature, params[i].top_p, params[i].min_p, params[i].top_k, uniform_from(seeds[i], steps[i])};
  }
  rows_.reserve(n * sizeof(SampleRow));
  probs_.reserve(n * size_t(vocab) * sizeof(float));
  tokens_.reserve(n * sizeof(int32_t));
  check(cudaMemcpyAsync(rows_.data(), rows.data(), n * sizeof(SampleRow), cudaMemcpyHostToDevice, stream_),
        "upload sampling rows");
  cuda::sample(logits, int(n), vocab, rows_.as<SampleRow>(), probs_.as<float>(), tokens_.as<int32_t>(), stream_);
  check(cudaMemcpyAsync(tokens.data(), tokens_.data(), n * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_),
        "download tokens");
  check(cudaStreamSynchronize(stream_), "sample");
  return tokens;
}

}  // namespace tidal::cuda
