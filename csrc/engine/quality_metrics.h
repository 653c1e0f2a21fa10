// How well a model variant predicts text, and how closely it follows its
// base, one predicted position at a time: the next token's negative
// log-likelihood under both, whether their most likely tokens agree, and
// KL(P_base || P_variant). Everything is computed in double precision from
// log-softmax, so comparing a model with itself gives exactly 0, not noise.
#pragma once

#include <cstdint>
#include <span>

namespace tidal {

// One predicted position.
struct PositionScore {
  double variant_nll = 0.0;  // -log P_variant(target)
  double base_nll = 0.0;     // -log P_base(target)
  bool top1_match = false;   // argmax of both logits is the same token (first index on ties)
  double kl = 0.0;           // sum_i P_base(i) * (log P_base(i) - log P_variant(i))
};

// Both logit rows have the vocabulary's length; target indexes them.
PositionScore score_position(std::span<const float> base_logits, std::span<const float> variant_logits,
                             int32_t target);

// Sums of PositionScores, added in position order so the totals do not
// depend on how the scoring was split across threads.
struct QualityTotals {
  int64_t positions = 0;
  double variant_nll = 0.0;
  double base_nll = 0.0;
  int64_t top1_matches = 0;
  double kl = 0.0;

  void add(const PositionScore& s);
  // Perplexity is exp(mean NLL). All four are NaN while no position has
  // been added: there is nothing to average.
  double variant_perplexity() const;
  double base_perplexity() const;
  double top1_agreement() const;
  double mean_kl() const;
};

}  // namespace tidal
