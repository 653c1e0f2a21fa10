// A view of one weight matrix: `rows` output features, each a contiguous row
// of `cols` input features stored in `type`'s block format. The memory is
// owned elsewhere (a mapped file or a buffer held by the model). The integer
// formats (I8, I8_G32, I4_G*) also point at their scales: dtype_scales_per_row floats
// per row, row-major.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tidal {

struct Weight {
  DType type = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;
  const float* scales = nullptr;  // integer formats only

  const float* row_scales(int64_t r) const { return scales + r * dtype_scales_per_row(type, cols); }

  size_t row_bytes() const { return dtype_row_bytes(type, cols); }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes(); }
  // Bytes of the values, then of the scales (0 for the block formats).
  size_t bytes() const { return static_cast<size_t>(rows) * row_bytes(); }
  size_t scale_bytes() const { return static_cast<size_t>(rows * dtype_scales_per_row(type, cols)) * sizeof(float); }
};

}  // namespace tidal
