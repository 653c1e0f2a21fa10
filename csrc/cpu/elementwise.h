// Row-wise and elementwise ops of the CPU backend. Each works on the range
// it is given; the backend splits ranges across threads. Every element is
// computed by the same instructions wherever it sits in a batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tidal::cpu {

// out[t] = x[t] / rms(x[t]) * gamma for rows [0, n_rows); out may alias x.
void rmsnorm_rows(const float* x, const float* gamma, int64_t n_rows, int dim, float eps, float* out);

// cos and sin of position * theta^(-2i/head_dim), i < head_dim/2, computed
// in double and kept per position so rope never re-evaluates them.
class RopeTable {
 public:
  // Makes positions [0, max_position] available for this head_dim and theta
  // (recomputing everything if either changed).
  void ensure(int head_dim, float theta, int32_t max_position);
  // [head_dim/2] cosines followed by [head_dim/2] sines.
  const float* at(int32_t position) const { return values_.data() + size_t(position) * size_t(head_dim_); }

 private:
  int head_dim_ = 0;
  float theta_ = 0.0f;
  int32_t size_ = 0;
  std::vector<float> values_;
};

// Rotates pairs (2i, 2i+1) of each head of tokens [0, n_tokens) in place.
void rope_rows(float* x, const int32_t* positions, int64_t n_tokens, int n_heads, int head_dim,
               const RopeTable& table);

// gate = silu(gate) * up.
void silu_mul(float* gate, const float* up, int64_t n);

// x += y.
void add(float* x, const float* y, int64_t n);

// core/fwht.h's transform over each block of `block` values of rows
// [0, n_rows) of `width`: every element is the same sequence of roundings
// wherever it is computed.
void hadamard_rows(float* x, int64_t n_rows, int width, int block);

}  // namespace tidal::cpu
