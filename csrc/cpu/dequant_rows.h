// Vectorized conversion of weight rows to F32, producing the same values as
// dequantize_weight_row (Q4_1's d*q+m is one fused multiply-add here, as the
// compiler contracts it there when FMA is available).
#pragma once

#include <cstdint>

#include "model/weight.h"

namespace tidal::cpu {

// Rows [first, first + n) of w; row i goes to dst + i * dst_stride
// (dst_stride >= w.cols). Elements past w.cols are left untouched.
void dequantize_rows(const Weight& w, int64_t first, int64_t n, float* dst, int64_t dst_stride);

}  // namespace tidal::cpu
