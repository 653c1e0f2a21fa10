// The small per-token ops of the forward pass on the device, all on
// `stream`. Pointers are device memory.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "model/weight.h"

namespace tidal::cuda {

// out[t] = row ids[t] of the table (device layout), as F32.
void embed(const Weight& table, const int32_t* ids, int n_tokens, float* out, cudaStream_t stream);

// out[t] = x[t] / rms(x[t]) * gamma; the sum of squares has a fixed order per
// row (each of 256 threads a strided run, then a fixed tree). out may alias x.
void rmsnorm(const float* x, const float* gamma, int n_tokens, int dim, float eps, float* out, cudaStream_t stream);

// Rotates adjacent pairs of every head; angles are computed in double, as the
// CPU backend's table is, so long positions keep float accuracy.
void rope(float* x, const int32_t* positions, int n_tokens, int n_heads, int head_dim, float theta,
          cudaStream_t stream);

void silu_mul(float* gate, const float* up, int64_t n, cudaStream_t stream);
void add(float* x, const float* y, int64_t n, cudaStream_t stream);
// Backend::hadamard: the butterflies of core/fwht.h in the same order,
// so each value is rounded exactly as on the host.
void hadamard(float* x, int64_t n_rows, int width, int block, cudaStream_t stream);

// Writes each token's K and V rows ([n_tokens][n_kv_heads * head_dim]) to
// its slot of the layer's pools ([block][kv_head][slot][head_dim]).
void kv_write(float* keys, float* values, const float* k, const float* v, const int32_t* slots, int n_tokens,
              int n_kv_heads, int head_dim, int block_size, cudaStream_t stream);

}  // namespace tidal::cuda
