// The Llama decoder forward pass over a flattened batch of tokens from many
// sequences, written against Backend ops so any backend can run it.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"
#include "model/backend.h"
#include "model/model.h"

namespace tidal {

struct ForwardBatch {
  const int32_t* tokens = nullptr;   // [meta.n_tokens]
  AttentionMeta meta;
  // Rows of the batch whose next-token logits are wanted (usually the last
  // token of each sequence that samples this step).
  std::vector<int32_t> logits_rows;
};

class LlamaForward {
 public:
  LlamaForward(const Model& model, Backend& backend);

  // Writes K/V of every token into `cache` and the logits of
  // batch.logits_rows into `logits` ([logits_rows.size()][vocab]).
  void forward(KvCache& cache, const ForwardBatch& batch, float* logits);

 private:
  void reserve(int n_tokens);

  const Model& model_;
  Backend& backend_;
  int capacity_ = 0;
  // Activations, [n_tokens][width]; reused across steps.
  std::vector<float> x_, h_, q_, k_, v_, attn_, gate_, up_, last_;
};

}  // namespace tidal
