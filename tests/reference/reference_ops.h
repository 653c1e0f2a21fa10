// A plain float64 implementation of every Backend op, written to be
// obviously correct rather than fast; tests compare the optimized backends
// with it. Inputs and outputs are F32 like the Backend's; everything in
// between is double. Weights are expanded with the scalar dequantize_row.
#pragma once

#include <cstdint>

#include "model/backend.h"

namespace tidal::ref {

void matmul(const Weight& w, const float* x, int n_tokens, float* y);
void embed(const Weight& table, const int32_t* ids, int n_tokens, float* out);
void rmsnorm(const float* x, const float* gamma, int n_tokens, int dim, float eps, float* out);
void rope(float* x, const int32_t* positions, int n_tokens, int n_heads, int head_dim, float theta);
void silu_mul(float* gate, const float* up, int64_t n);
void add(float* x, const float* y, int64_t n);
void hadamard(float* x, int64_t n_rows, int width, int block);
void kv_write(KvCache& cache, int layer, const float* k, const float* v, const AttentionMeta& meta);
void attention(const KvCache& cache, int layer, const float* q, const AttentionMeta& meta, int n_heads, float* out);

// The functions above behind the Backend interface, to run a whole forward
// pass at reference precision.
class ReferenceBackend : public Backend {
 public:
  void matmul(const Weight& w, const float* x, int n_tokens, float* y) override { ref::matmul(w, x, n_tokens, y); }
  void embed(const Weight& table, const int32_t* ids, int n_tokens, float* out) override {
    ref::embed(table, ids, n_tokens, out);
  }
  void rmsnorm(const float* x, const float* gamma, int n_tokens, int dim, float eps, float* out) override {
    ref::rmsnorm(x, gamma, n_tokens, dim, eps, out);
  }
  void rope(float* x, const int32_t* positions, int n_tokens, int n_heads, int head_dim, float theta) override {
    ref::rope(x, positions, n_tokens, n_heads, head_dim, theta);
  }
  void silu_mul(float* gate, const float* up, int64_t n) override { ref::silu_mul(gate, up, n); }
  void add(float* x, const float* y, int64_t n) override { ref::add(x, y, n); }
  void hadamard(float* x, int64_t n_rows, int width, int block) override { ref::hadamard(x, n_rows, width, block); }
  void kv_write(KvCache& cache, int layer, const float* k, const float* v, const AttentionMeta& meta) override {
    ref::kv_write(cache, layer, k, v, meta);
  }
  void attention(const KvCache& cache, int layer, const float* q, const AttentionMeta& meta, int n_heads,
                 float* out) override {
    ref::attention(cache, layer, q, meta, n_heads, out);
  }
};

}  // namespace tidal::ref
