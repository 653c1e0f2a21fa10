// The Llama decoder forward pass over a flattened batch of tokens from many
// sequences, written against Backend ops so any backend can run it. It runs
// the whole model on one device, or one tensor-parallel shard of one
// pipeline stage (parallel/shard.h), which its executor drives step by step.
#pragma once

#include <cstdint>
#include <vector>

#include "core/aligned_vector.h"
#include "kv/kv_cache.h"
#include "model/backend.h"
#include "model/model.h"
#include "parallel/communicator.h"

namespace tidal {

struct ForwardBatch {
  const int32_t* tokens = nullptr;   // [meta.n_tokens]
  AttentionMeta meta;
  // Rows of the batch whose next-token logits are wanted (usually the last
  // token of each sequence that samples this step).
  std::vector<int32_t> logits_rows;
};

// How a tensor-parallel shard combines its results with its peers'.
struct TensorParallel {
  // The ranks sharing this stage's layers; null without tensor parallelism.
  Communicator* comm = nullptr;
  // comm->size() + 1 bounds: rank t holds embedding and LM head rows
  // [vocab_offsets[t], vocab_offsets[t + 1]).
  std::vector<int> vocab_offsets;
};

class LlamaForward {
 public:
  // The whole model on one device.
  LlamaForward(const Model& model, Backend& backend);
  // One shard: the row-parallel projections' partial sums are all-reduced
  // over tp.comm, and the vocab-parallel embedding and LM head combined.
  LlamaForward(const Model& shard, Backend& backend, TensorParallel tp);

  // Writes K/V of every token into `cache` and the logits of
  // batch.logits_rows into `logits` ([logits_rows.size()][vocab]).
  void forward(KvCache& cache, const ForwardBatch& batch, float* logits);

  // The steps of forward(), for pipeline stages. hidden(n) is the
  // [n][dim] activation buffer they work on (a later stage receives into it).
  float* hidden(int n_tokens);
  void embed(const int32_t* tokens, int n_tokens);
  void run_layers(KvCache& cache, const AttentionMeta& meta);
  void head(const std::vector<int32_t>& rows, float* logits);

 private:
  void reserve(int n_tokens);
  // Sums a row-parallel projection's partial results across tensor ranks.
  void all_reduce(float* x, int64_t n);

  const Model& model_;
  Backend& backend_;
  TensorParallel tp_;
  int vocab_size_;
  int capacity_ = 0;
  // Activations, [n_tokens][width]; reused across steps.
  AlignedVector<float> x_, h_, q_, k_, v_, attn_, gate_, up_, last_;
  // Vocab-parallel scratch: local ids and rows, padded logit slices.
  std::vector<int32_t> local_ids_, local_rows_;
  AlignedVector<float> part_, gathered_;
};

}  // namespace tidal
