// Token sampling on the device, one thread block per row of logits.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tidal::cuda {

// What a row needs of its SamplingParams, plus its uniform draw (from
// uniform_from(seed, step) on the host, so streams match the CPU sampler).
struct SampleRow {
  float temperature;  // < 1e-5: greedy
  float top_p;
  float min_p;
  int32_t top_k;      // <= 0 or >= vocab: off
  double u;           // in [0, 1)
};

// tokens[r] for every row, with the CPU sampler's rule (engine/sampler.cpp):
// candidates are the top_k most likely (ties by lowest id), weighted
// exp((logit - max) / T); top_p and min_p keep a most-likely-first prefix;
// the draw is the first token whose cumulative mass exceeds u * kept mass.
// Instead of sorting, every prefix is found by a bitwise search over the
// (logit, id) order, each step one reduction over the row. `probs` is
// scratch of n_rows * vocab floats. All pointers are device memory.
void sample(const float* logits, int n_rows, int vocab, const SampleRow* rows, float* probs, int32_t* tokens,
            cudaStream_t stream);

}  // namespace tidal::cuda
