// Samples next tokens from logits that are already on the device, so only
// one int per row comes back instead of a vocabulary-sized row.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>
#include <vector>

#include "cuda/device_buffer.h"
#include "engine/sampling_params.h"

namespace tidal::cuda {

class CudaSampler {
 public:
  explicit CudaSampler(cudaStream_t stream) : stream_(stream) {}

  // Penalties change logits by the sequence's history and logprobs need the
  // full distribution: rows asking for either must use the host sampler.
  static bool supports(const SamplingParams& params);

  // One token per row of `logits` ([n_rows][vocab], device). Row i draws
  // with params[i] and uniform_from(seeds[i], steps[i]), as sample_token
  // does, and gives the same token as it except where float rounding of the
  // probability sums decides (masses are summed in another order).
  // Synchronizes the stream.
  std::vector<int32_t> sample(const float* logits, int vocab, std::span<const SamplingParams> params,
                              std::span<const uint64_t> seeds, std::span<const uint64_t> steps);

 private:
  cudaStream_t stream_;
  DeviceBuffer rows_, probs_, tokens_;
};

}  // namespace tidal::cuda
