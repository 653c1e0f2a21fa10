// Integer matmul kernels: weights in I8 or I8_G32 (W8A8) or I4_G* (W4A8)
// times activations quantized per token, or per block of 32 for I8_G32
// (cpu/int_activations.h); W8A16_G32 and W4A16_G* times int16 activations
// have their own order (cpu/a16_kernels.cpp).
//
//   I8:     y = scale_x * scale_w[row] * float(sum_k q_w[k] * q_x[k])
//   I4_G:   y = scale_x * sum over groups g of scale_w[g] * float(sum_{k in g} q_w[k] * q_x[k])
//   I8_G32: y = sum over groups g of (scale_w[g] * scale_x[g]) * float(sum_{k in g} q_w[k] * q_x[k])
//
// The integer sums are exact, so their order is free. What is rounded is
// fixed per (row, token), whatever tile, batch or thread computes it:
//   - I8: one conversion of the exact dot product and two multiplies;
//   - I4 (SIMD): each W-wide float accumulator (W = 16 AVX-512, 8 AVX2)
//     takes, chunk after chunk of the row, one fused multiply-add of each
//     lane's exact partial dot product (8 consecutive elements, all in one
//     group) by its group's scale; the lanes are then added as the halving
//     tree of cpu/lane_sums.h, and the sum multiplied by scale_x;
//   - I4 (scalar): one fused multiply-add per group, in group order;
//   - I8_G32: as I4, with the rounded product scale_w[g] * scale_x[g] in
//     place of scale_w[g] and no final multiply (W = 16 lanes of 4
//     elements on AVX-512, 8 lanes of 4 on AVX2, whose chunk is one group).
// So results are batch invariant; different ISAs round differently.
#pragma once

#include <cstdint>

#include "cpu/int_activations.h"
#include "model/weight.h"

namespace tidal::cpu {

// Rows are limited so an exact int32 sum of code products cannot overflow
// (127 * 255 * 65536 < 2^31).
constexpr int64_t kMaxIntCols = 65536;

enum class RowOrder {
  kStream,  // each weight row read once for all the tokens (a few: decode), tiles from far-apart regions
  kPanel,   // neighbouring rows swept once per group of tokens: rows that stay in cache (prefill)
};

// How a call covers its rows: the order, and for a panel the bytes to pull
// into L2 meanwhile, spread evenly over its tiles (the next panel's rows, so
// their DRAM reads overlap this panel's arithmetic).
struct RowSweep {
  RowOrder order;
  const uint8_t* prefetch = nullptr;
  int64_t prefetch_bytes = 0;

  // Implicit, so that a plain order is a sweep without prefetch.
  RowSweep(RowOrder order, const uint8_t* prefetch = nullptr, int64_t prefetch_bytes = 0)
      : order(order), prefetch(prefetch), prefetch_bytes(prefetch_bytes) {}
};

// y[t * y_stride + r] for rows [first_row, first_row + n_rows) of w and
// tokens [first_token, first_token + n_tokens) of x (y points at the output
// of the first row and token). Both orders give the same bits.
void int8_dot_rows(const Weight& w, int64_t first_row, int64_t n_rows, const QuantizedActivations& x,
                   int64_t first_token, int64_t n_tokens, float* y, int64_t y_stride, const RowSweep& sweep);
void int4_dot_rows(const Weight& w, int64_t first_row, int64_t n_rows, const QuantizedActivations& x,
                   int64_t first_token, int64_t n_tokens, float* y, int64_t y_stride, const RowSweep& sweep);
void int8_g32_dot_rows(const Weight& w, int64_t first_row, int64_t n_rows, const QuantizedActivations& x,
                       int64_t first_token, int64_t n_tokens, float* y, int64_t y_stride, const RowSweep& sweep);
// W8A16_G32 and W4A16_G* (cpu/a16_kernels.cpp has the order of its sums).
void a16_dot_rows(const Weight& w, int64_t first_row, int64_t n_rows, const QuantizedActivations& x,
                  int64_t first_token, int64_t n_tokens, float* y, int64_t y_stride, const RowSweep& sweep);

// The kernel above that multiplies weights of `type` (an integer format).
using IntDotRows = decltype(&int8_dot_rows);
inline IntDotRows int_dot_rows_for(DType type) {
  if (type == DType::I8) return int8_dot_rows;
  if (type == DType::I8_G32) return int8_g32_dot_rows;
  if (dtype_is_a16(type)) return a16_dot_rows;
  return int4_dot_rows;
}

}  // namespace tidal::cpu
