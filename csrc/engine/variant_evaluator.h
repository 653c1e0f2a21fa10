// Teacher-forced evaluation of a model variant against its base on the same
// text: both models read the same token windows and every predicted position
// is scored (engine/quality_metrics.h). Each window is one sequence in a
// private paged KV cache, run through LlamaForward with logits requested for
// every row, where serving asks only for each sequence's last row.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "engine/quality_metrics.h"
#include "model/backend.h"
#include "model/model.h"

namespace tidal {

// Splits text tokens (no BOS among them) into non-overlapping windows of at
// most `context` tokens. With bos >= 0 each window is BOS followed by the
// next context - 1 text tokens, so every text token is predicted exactly
// once; with bos < 0 each window is the next `context` text tokens and its
// first token only conditions the others. Windows that predict nothing
// (a single token) are dropped.
std::vector<std::vector<int32_t>> split_windows(std::span<const int32_t> text, int32_t bos, int context);

// Scores every position of every window that has a next token, in window
// order. `variant` and `base` may be the same Model: it then runs once and
// its logits stand for both. Windows must fit the models' context length.
QualityTotals evaluate_variant(const Model& variant, const Model& base, Backend& backend, ThreadPool& pool,
                               const std::vector<std::vector<int32_t>>& windows);

}  // namespace tidal
