// Which part of the model one rank holds (Megatron-style tensor parallelism
// inside each pipeline stage) and the weights of that part.
//
// Rank r of a replica is tensor rank r % tp of stage r / tp. Its stage holds
// layers [layer_begin, layer_end); within them it holds
//   - query heads and their KV heads [h0, h1) of wq, wk, wv (column parallel:
//     whole rows of the weight) and the same columns of wo (row parallel);
//   - FFN units [f0, f1) of w_gate, w_up (rows) and of w_down (columns);
//   - on the first stage, embedding rows [vocab_begin, vocab_end), and on the
//     last, the same rows of the LM head (vocab parallel) and the final norm.
// The norms are replicated. Its KV cache holds only its heads of its layers.
#pragma once

#include <cstddef>
#include <vector>

#include "core/dtype.h"
#include "model/llama_forward.h"
#include "model/model.h"
#include "parallel/parallel_config.h"

namespace tidal {

struct ShardLayout {
  int tp_rank = 0, tp_size = 1;
  int stage = 0, num_stages = 1;
  int layer_begin = 0, layer_end = 0;
  std::vector<int> vocab_offsets;  // tp_size + 1 bounds: tensor rank t holds [offsets[t], offsets[t + 1])

  bool first_stage() const { return stage == 0; }
  bool last_stage() const { return stage == num_stages - 1; }
  int vocab_begin() const { return vocab_offsets[size_t(tp_rank)]; }
  int vocab_end() const { return vocab_offsets[size_t(tp_rank) + 1]; }
};

// The layout of rank `rank` (0 <= rank < tp * pp) of a replica.
ShardLayout shard_layout(const ModelConfig& config, const ParallelConfig& parallel, int rank);

// The weights `layout` holds, with the shard's own config (its layer count
// and its numbers of heads, KV heads and FFN units). Row slices are views
// into `full`, which must outlive the shard: with a memory-mapped file only
// the pages of this rank's rows are ever read. The column slices of wo and
// w_down are copied into storage the shard owns.
Model shard_model(const Model& full, const ShardLayout& layout);

// Bytes of K and V (elements of kv_dtype) one token takes in the KV cache of
// the rank that holds the most (every rank gets the same number of blocks).
size_t max_kv_bytes_per_token(const ModelConfig& config, const ParallelConfig& parallel, DType kv_dtype);

// What LlamaForward needs to combine this shard's results with its peers'.
TensorParallel tensor_parallel(const ShardLayout& layout, Communicator* tp_group);

}  // namespace tidal
