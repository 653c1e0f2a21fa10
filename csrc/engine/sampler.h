// Turns one row of logits into a token. Randomness is counter-based: the
// draw for a sequence's k-th generated token depends only on (seed, k), so a
// sequence gives the same output alone, in any batch, and after preemption.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/sampling_params.h"

namespace tidal {

struct TokenLogprob {
  int32_t id;
  float logprob;
};

struct SampleResult {
  int32_t token = -1;                // -1: the row is no distribution (it holds NaN, or no finite maximum)
  float logprob = 0.0f;              // log-softmax of the raw logits at `token`
  std::vector<TokenLogprob> top;     // the params.logprobs most likely tokens, when asked
};

// Samples from `logits` (modified in place). `output_tokens` are the tokens
// generated so far (for presence/frequency penalties; with `prompt_tokens`,
// for the repetition penalty); `step` is how many have been generated;
// `seed` identifies the sequence's random stream. A row with NaN or without
// a finite maximum gives token -1 (and no logprobs) rather than a draw: the
// caller fails that sequence.
SampleResult sample_token(std::span<float> logits, const SamplingParams& params,
                          std::span<const int32_t> output_tokens, uint64_t seed, uint64_t step,
                          std::span<const int32_t> prompt_tokens = {});

// A uniform double in [0, 1) from (seed, step): splitmix64-based, stateless.
double uniform_from(uint64_t seed, uint64_t step);

}  // namespace tidal
