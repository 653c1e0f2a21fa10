// The op set the Llama forward pass needs. The CPU backend (csrc/cpu) and the
// CUDA backend (cuda/) implement it; tests compare each op with a plain
// reference. All activations are F32, row-major, one row per token.
//
// Every op is batch-invariant: the result for one token never depends on
// which other tokens share the batch (fixed reduction order per row). That
// is what makes batched, chunked, preempted and one-at-a-time generation
// produce bit-identical tokens.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "kv/kv_cache.h"
#include "model/weight.h"

namespace tidal {

// Where each token of a flattened batch sits in the paged KV cache.
struct AttentionMeta {
  int n_tokens = 0;
  const int32_t* positions = nullptr;     // [n_tokens] absolute position in its sequence
  const int32_t* seq_index = nullptr;     // [n_tokens] index into block_tables
  const int32_t* slot_mapping = nullptr;  // [n_tokens] block * block_size + offset to write K/V
  std::vector<std::span<const int32_t>> block_tables;  // per sequence: physical block ids
};

class Backend {
 public:
  virtual ~Backend() = default;

  // y[t][r] = sum_k x[t][k] * W[r][k] for t < n_tokens, r < w.rows.
  virtual void matmul(const Weight& w, const float* x, int n_tokens, float* y) = 0;
  // out[t] = dequantized row ids[t] of the table.
  virtual void embed(const Weight& table, const int32_t* ids, int n_tokens, float* out) = 0;
  // out[t] = x[t] / rms(x[t]) * gamma  (out may alias x).
  virtual void rmsnorm(const float* x, const float* gamma, int n_tokens, int dim, float eps, float* out) = 0;
  // Rotates adjacent pairs (2i, 2i+1) of each head of each token in place by
  // angle position * theta^(-2i/head_dim).
  virtual void rope(float* x, const int32_t* positions, int n_tokens, int n_heads, int head_dim, float theta) = 0;
  // gate = silu(gate) * up, elementwise over n values.
  virtual void silu_mul(float* gate, const float* up, int64_t n) = 0;
  // x += y, elementwise.
  virtual void add(float* x, const float* y, int64_t n) = 0;
  // Each block of `block` consecutive values of each of the n_rows rows of
  // `width` values becomes H v / sqrt(block), H the Sylvester Hadamard matrix
  // (block a power of two dividing width): an orthogonal map that is its
  // own inverse. Butterflies run in the order of fwht (core/fwht.h).
  virtual void hadamard(float* x, int64_t n_rows, int width, int block) = 0;
  // Writes each token's K and V rows ([n_tokens][n_kv_heads*head_dim]) to its slot.
  virtual void kv_write(KvCache& cache, int layer, const float* k, const float* v, const AttentionMeta& meta) = 0;
  // Causal attention of each token over positions 0..positions[t] of its
  // sequence, read through the block table. q and out: [n_tokens][n_heads*head_dim].
  virtual void attention(const KvCache& cache, int layer, const float* q, const AttentionMeta& meta, int n_heads,
                         float* out) = 0;
};

}  // namespace tidal
