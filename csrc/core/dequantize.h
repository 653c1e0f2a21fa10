// Scalar conversions between F32 and the stored weight formats. This is the
// single reference path: loaders use it to convert tensors, and the optimized
// kernels are tested against it.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tidal {

// IEEE half <-> float. fp32_to_fp16 rounds to nearest even, overflows to inf,
// keeps NaN a (quiet) NaN and produces subnormals where needed.
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);

// bfloat16 <-> float; fp32_to_bf16 rounds to nearest even and keeps NaN a NaN.
float bf16_to_fp32(uint16_t b);
uint16_t fp32_to_bf16(float f);

// Converts `n` elements stored in `type` (dtype_row_bytes(type, n) bytes at
// `src`) to floats. `n` must be a multiple of the type's block size. The
// integer formats (I8, I8_G32, I4_G*) throw kInvalidArgument in both directions:
// their scales live in Weight::scales (model/quantize_matrix.h handles them).
void dequantize_row(DType type, const uint8_t* src, float* dst, int64_t n);

// The inverse, bit-for-bit as ggml's reference quantizers
// (quantize_row_q8_0_ref / q4_0_ref / q4_1_ref). Same block-size rule.
void quantize_row(DType type, const float* src, uint8_t* dst, int64_t n);

}  // namespace tidal
