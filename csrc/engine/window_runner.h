// One model reading one token sequence at a time, teacher-forced, with the
// logits of chosen positions: what `tidal eval` and shadow monitoring
// (reconfig/shadow_scorer.h) score variants with. The sequence is one
// sequence in a private paged KV cache whose blocks are 0, 1, 2, ..., so a
// token's slot is its position; it is run a chunk of positions at a time
// through LlamaForward.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"
#include "model/backend.h"
#include "model/llama_forward.h"
#include "model/model.h"

namespace tidal {

class WindowRunner {
 public:
  // Sequences up to `max_window` tokens.
  WindowRunner(const Model& model, Backend& backend, int max_window);

  // Runs positions [begin, end) of `window`; positions before `begin` must
  // have been run by the previous calls. Returns the logits after positions
  // [max(begin, first_logit), end), one vocabulary row each: rows before
  // `first_logit` are only context, and skipping their LM head saves most
  // of a long prompt's cost.
  const float* run(const std::vector<int32_t>& window, int begin, int end, int first_logit = 0);

 private:
  size_t vocab_;
  LlamaForward forward_;
  KvCache cache_;
  std::vector<int32_t> block_table_, positions_, seq_index_;
  std::vector<float> logits_;
};

}  // namespace tidal
