// Dot products in the one reduction order the CPU backend uses everywhere
// (matmul, attention scores, norms), so a result never depends on which
// tile, batch size or thread produced it:
//   - lane j of a W-wide accumulator (W = 16 AVX-512, 8 AVX2) sums
//     a[i]*b[i] for i = j, j+W, j+2W, ... in increasing order, one fused
//     multiply-add per step; the last partial step reads zeros past n;
//   - the W lanes are then added as a halving tree (lane j += lane j+W/2,
//     then j+W/4, ...).
// The scalar build sums a[i]*b[i] in increasing i instead.
#pragma once

#include <cstdint>

#include "model/weight.h"

namespace tidal::cpu {

// y[t*y_stride + r] = dot(x + t*x_stride, w + r*w_stride, k)
// for r < n_rows and t < n_tokens. Register-tiled over rows and tokens.
// Meanwhile it pulls prefetch_bytes at `prefetch` into L2, a line per step
// of its first tiles (cpu/panel_prefetch.h): a caller sweeping panels of
// rows from memory names the next panel.
void dot_block(const float* w, int64_t w_stride, int64_t n_rows, const float* x, int64_t x_stride, int64_t n_tokens,
               int64_t k, float* y, int64_t y_stride, const void* prefetch = nullptr, int64_t prefetch_bytes = 0);

// dot_block over rows [first_row, first_row + n_rows) of w in its stored
// format, decoding each weight in registers as it is used: the same result
// as dequantizing the rows and calling dot_block, without the round trip
// through memory. For a few tokens; with many, decoding once into a panel
// and reusing it is cheaper. Not for the integer formats, whose kernels
// take int8 activations (cpu/int_kernels.h).
void dot_block_weights(const Weight& w, int64_t first_row, int64_t n_rows, const float* x, int64_t x_stride,
                       int64_t n_tokens, float* y, int64_t y_stride);

float dot(const float* a, const float* b, int64_t n);

// Sum of a[0..n) in the dot-product order (equal to dot(a, ones, n)).
float sum(const float* a, int64_t n);

}  // namespace tidal::cpu
