// Matrix products with device weights (cuda/device_layout.h) and F32
// activations, all on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "model/weight.h"

namespace tidal::cuda {

// y[t][r] = sum_k x[t][k] * W[r][k], for every weight type. Weights are
// decoded in registers; products accumulate in F32. Each output has one
// fixed reduction order, whatever the number of tokens: lane l of the warp
// that owns row r sums chunks l, l+32, ... of the row (a chunk is a 32-value
// quantization block, or 8 values of a plain type) element by element, and
// the 32 lane sums are added by a fixed tree. A warp owns 4 rows and up to 8
// tokens, so a weight value is decoded once for 8 tokens and an activation
// value is loaded once for 4 rows.
void matmul_rows(const Weight& w, const float* x, int n_tokens, float* y, cudaStream_t stream);

// x (F32, n values) to F16 or BF16, for the tensor-core path.
void convert_to_half(const float* x, int64_t n, bool bf16, void* out, cudaStream_t stream);

// A quantized matrix as row-major F16, for cuBLAS: each value d * q (+ m)
// is rounded to F16 once.
void dequantize_to_f16(const Weight& w, void* out, cudaStream_t stream);

}  // namespace tidal::cuda
