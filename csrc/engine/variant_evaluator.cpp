#include "engine/variant_evaluator.h"

#include <algorithm>
#include <numeric>
#include <optional>

#include "core/error.h"
#include "engine/window_runner.h"

namespace tidal {

namespace {

// Positions run per forward call. It bounds the logits buffers (chunk x
// vocab floats per model) and cannot change any result: every op is
// batch-invariant, so a chunked window gives the logits of a whole one.
constexpr int kChunk = 128;

}  // namespace

std::vector<std::vector<int32_t>> split_windows(std::span<const int32_t> text, int32_t bos, int context) {
  const size_t prefix = bos >= 0 ? 1 : 0;
  if (size_t(context) <= prefix) {
    throw Error(ErrorCode::kInvalidArgument, "evaluation context must hold at least 2 tokens");
  }
  const size_t take = size_t(context) - prefix;
  std::vector<std::vector<int32_t>> windows;
  for (size_t start = 0; start < text.size(); start += take) {
    std::vector<int32_t> w;
    if (bos >= 0) w.push_back(bos);
    const auto slice = text.subspan(start, std::min(take, text.size() - start));
    w.insert(w.end(), slice.begin(), slice.end());
    if (w.size() >= 2) windows.push_back(std::move(w));
  }
  return windows;
}

QualityTotals evaluate_variant(const Model& variant, const Model& base, Backend& backend, ThreadPool& pool,
                               const std::vector<std::vector<int32_t>>& windows) {
  size_t longest = 0;
  for (const auto& w : windows) longest = std::max(longest, w.size());
  if (longest > size_t(std::min(variant.config.max_seq_len, base.config.max_seq_len))) {
    throw Error(ErrorCode::kInvalidArgument, "evaluation window of " + std::to_string(longest) +
                                                 " tokens exceeds the model's context length");
  }
  if (variant.config.vocab_size != base.config.vocab_size) {
    throw Error(ErrorCode::kInvalidArgument, "variant and base have different vocabularies");
  }
  const size_t vocab = size_t(variant.config.vocab_size);
  WindowRunner variant_runner(variant, backend, int(longest));
  std::optional<WindowRunner> base_runner;
  if (&base != &variant) base_runner.emplace(base, backend, int(longest));

  QualityTotals totals;
  std::vector<PositionScore> scores;
  for (const auto& w : windows) {
    // The last token is only ever a target, so it is never run.
    const int predicted = int(w.size()) - 1;
    for (int begin = 0; begin < predicted; begin += kChunk) {
      const int end = std::min(begin + kChunk, predicted);
      const float* v = variant_runner.run(w, begin, end);
      const float* b = base_runner ? base_runner->run(w, begin, end) : v;
      scores.resize(size_t(end - begin));
      pool.parallel_for(end - begin, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          scores[size_t(i)] = score_position({b + size_t(i) * vocab, vocab}, {v + size_t(i) * vocab, vocab},
                                             w[size_t(begin + i) + 1]);
        }
      });
      for (const PositionScore& s : scores) totals.add(s);
    }
  }
  return totals;
}

}  // namespace tidal
