// Batch-1 greedy decode throughput of a model through the serving engine,
// the figure a variant catalog quotes as its speed.
#pragma once

#include <cstdint>
#include <vector>

#include "model/backend.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace tidal {

// Generates `tokens` greedy tokens (EOS ignored) after `prompt`, once to
// warm up caches and thread pool, then again timed; returns the decode rate
// in tokens per second, the prefill step and first token excluded.
double measure_decode_tok_s(const Model& model, const Tokenizer& tokenizer, Backend& backend,
                            const std::vector<int32_t>& prompt, int tokens);

}  // namespace tidal
