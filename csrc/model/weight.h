// A view of one weight matrix: `rows` output features, each a contiguous row
// of `cols` input features stored in `type`'s block format. The memory is
// owned elsewhere (a mapped file or a buffer held by the model).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tidal {

struct Weight {
  DType type = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;

  size_t row_bytes() const { return dtype_row_bytes(type, cols); }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes(); }
  size_t bytes() const { return static_cast<size_t>(rows) * row_bytes(); }
};

}  // namespace tidal
