// Paged causal attention on the device, as planned by cuda/attention_plan.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "cuda/attention_plan.h"

namespace tidal::cuda {

// Device pointers, except where noted.
struct AttentionArgs {
  const float* keys = nullptr;    // the layer's K pool, [block][kv_head][slot][head_dim]
  const float* values = nullptr;  // the layer's V pool
  int n_kv_heads = 0, head_dim = 0, block_size = 0;
  const int32_t* tables = nullptr;  // [n_seqs][table_stride]
  int table_stride = 0;
  const int32_t* positions = nullptr;  // [n_tokens]
  const AttentionItem* items = nullptr;
  int n_items = 0;
  const float* q = nullptr;  // [n_tokens][n_heads][head_dim]
  float* out = nullptr;      // same shape
  int n_tokens = 0, n_heads = 0, group = 1, queries_per_item = 1;
  float scale = 1.0f;  // 1 / sqrt(head_dim)
  bool split = false;
  float* partials = nullptr;                 // split: [partial row][head][head_dim + 4]
  const int32_t* partial_offsets = nullptr;  // split: first partial row of each token
};

// Floats of partial scratch a split plan needs.
inline size_t attention_partial_floats(const AttentionPlan& plan, int n_heads, int head_dim) {
  return size_t(plan.partial_rows) * size_t(n_heads) * size_t(head_dim + 4);
}

// Dynamic shared memory of one attention block.
size_t attention_shared_bytes(int head_dim, int warps);

// Runs the attention kernel and, in split mode, the merge kernel.
void attention(const AttentionArgs& args, cudaStream_t stream);

}  // namespace tidal::cuda
