// Scores one served request teacher-forced under the base model and under
// candidate variants (the paper's P3, "sampled comparison against the base
// off the critical path"): every model reads prompt + served tokens, and at
// each position that predicted a served token the base's and the variant's
// logits are compared (engine/quality_metrics.h, the same per-position
// score `tidal eval` sums). One prefill per model, a chunk of positions at
// a time, each chunk handed to a UnitRunner that decides when it may run
// (the shadow budget, the shared pool's turn), so that scoring never holds
// the cores for more than one chunk while requests wait.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/cpu_backend.h"
#include "engine/quality_metrics.h"
#include "model/model.h"

namespace tidal {

struct ShadowResult {
  std::string variant;
  QualityTotals totals;  // over the served positions
  // The variant's greedy choice equals the base's at every served
  // position: read along the served path, their greedy continuations agree.
  bool greedy_agree() const { return totals.positions > 0 && totals.top1_matches == totals.positions; }
};

class ShadowScorer {
 public:
  // Runs `work` (one model over one chunk) when it may; blocks until done.
  using UnitRunner = std::function<void(const std::function<void()>& work)>;
  // Positions per unit of work.
  static constexpr int kChunk = 32;

  ShadowScorer(ThreadPool& pool, UnitRunner unit);

  // `served` must not be empty; prompt + served must fit every model's
  // context. `variants` are scored in order, all against one base run.
  std::vector<ShadowResult> score(const Model& base,
                                  const std::vector<std::pair<std::string, std::shared_ptr<const Model>>>& variants,
                                  std::span<const int32_t> prompt, std::span<const int32_t> served);

 private:
  ThreadPool& pool_;
  CpuBackend backend_;  // its scratch is this scorer's alone
  UnitRunner unit_;
};

// Offline agreement of a greedy output with the base: teacher-forced on
// prompt + served, the served positions where the base's top-1 (first
// index on ties) is the served token. A greedy variant serves its own
// top-1, so for its outputs this counts what ShadowScorer's top1_matches
// counts against that variant, with the base alone (bench/adaptive.sh
// scores every served output this way, whatever configuration served it).
struct ServedAgreement {
  int64_t positions = 0, matches = 0;
};
ServedAgreement served_agreement(const Model& base, Backend& backend, std::span<const int32_t> prompt,
                                 std::span<const int32_t> served);

}  // namespace tidal
