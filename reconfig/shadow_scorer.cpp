#include "reconfig/shadow_scorer.h"

#include <algorithm>

#include "core/error.h"
#include "engine/window_runner.h"

namespace tidal {

ShadowScorer::ShadowScorer(ThreadPool& pool, UnitRunner unit) : pool_(pool), backend_(pool), unit_(std::move(unit)) {}

std::vector<ShadowResult> ShadowScorer::score(
    const Model& base, const std::vector<std::pair<std::string, std::shared_ptr<const Model>>>& variants,
    std::span<const int32_t> prompt, std::span<const int32_t> served) {
  if (prompt.empty() || served.empty()) throw Error(ErrorCode::kInvalidArgument, "shadow sample without tokens");
  std::vector<int32_t> tokens(prompt.begin(), prompt.end());
  tokens.insert(tokens.end(), served.begin(), served.end());
  const int length = int(tokens.size());
  for (const auto& [name, model] : variants) {
    if (model->config.vocab_size != base.config.vocab_size) {
      throw Error(ErrorCode::kInvalidArgument, "variant " + name + " has another vocabulary than the base");
    }
  }
  if (length > base.config.max_seq_len) throw Error(ErrorCode::kInvalidArgument, "shadow sample exceeds the context");
  const size_t vocab = size_t(base.config.vocab_size);
  // Position p's logits predict token p + 1: the first served token is
  // predicted at the prompt's last position, the last token is never run.
  const int first = int(prompt.size()) - 1;
  const int predicted = length - 1;

  WindowRunner base_runner(base, backend_, length);
  std::vector<std::unique_ptr<WindowRunner>> runners;
  for (const auto& [name, model] : variants) runners.push_back(std::make_unique<WindowRunner>(*model, backend_, length));
  std::vector<ShadowResult> results(variants.size());
  for (size_t v = 0; v < variants.size(); ++v) results[v].variant = variants[v].first;

  std::vector<float> base_logits;
  std::vector<PositionScore> scores;
  for (int begin = 0; begin < predicted; begin += kChunk) {
    const int end = std::min(begin + kChunk, predicted);
    const int rows = std::max(0, end - std::max(begin, first));
    unit_([&] {
      const float* b = base_runner.run(tokens, begin, end, first);
      base_logits.assign(b, b + size_t(rows) * vocab);
    });
    for (size_t v = 0; v < variants.size(); ++v) {
      unit_([&] {
        const float* x = runners[v]->run(tokens, begin, end, first);
        if (rows == 0) return;
        scores.resize(size_t(rows));
        const int row0 = std::max(begin, first);
        pool_.parallel_for(rows, [&](int64_t lo, int64_t hi) {
          for (int64_t i = lo; i < hi; ++i) {
            scores[size_t(i)] = score_position({base_logits.data() + size_t(i) * vocab, vocab},
                                               {x + size_t(i) * vocab, vocab}, tokens[size_t(row0 + i) + 1]);
          }
        });
        // In position order, as evaluate_variant adds them.
        for (const PositionScore& s : scores) results[v].totals.add(s);
      });
    }
  }
  return results;
}

ServedAgreement served_agreement(const Model& base, Backend& backend, std::span<const int32_t> prompt,
                                 std::span<const int32_t> served) {
  if (prompt.empty() || served.empty()) throw Error(ErrorCode::kInvalidArgument, "agreement needs a prompt and tokens");
  std::vector<int32_t> tokens(prompt.begin(), prompt.end());
  tokens.insert(tokens.end(), served.begin(), served.end());
  if (int64_t(tokens.size()) > base.config.max_seq_len) {
    throw Error(ErrorCode::kInvalidArgument, "prompt + output of " + std::to_string(tokens.size()) +
                                                 " tokens exceeds the context of " +
                                                 std::to_string(base.config.max_seq_len));
  }
  const size_t vocab = size_t(base.config.vocab_size);
  const int first = int(prompt.size()) - 1, predicted = int(tokens.size()) - 1;
  constexpr int kWideChunk = 128;
  WindowRunner runner(base, backend, int(tokens.size()));
  ServedAgreement a;
  for (int begin = 0; begin < predicted; begin += kWideChunk) {
    const int end = std::min(begin + kWideChunk, predicted);
    const float* logits = runner.run(tokens, begin, end, first);
    const int row0 = std::max(begin, first);
    for (int p = row0; p < end; ++p) {
      const float* row = logits + size_t(p - row0) * vocab;
      const int32_t top = int32_t(std::max_element(row, row + vocab) - row);
      ++a.positions;
      a.matches += top == tokens[size_t(p) + 1];
    }
  }
  return a;
}

}  // namespace tidal
