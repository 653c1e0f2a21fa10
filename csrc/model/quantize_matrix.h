// Converting a whole weight matrix to another stored format: the reference
// path by which variants are derived (f16, bf16, int8, int4-g*), and the
// exact inverse for the integer formats' tests.
#pragma once

#include <memory>
#include <vector>

#include "core/aligned_vector.h"
#include "model/model.h"

namespace tidal {

// An owned matrix in `view.type`'s format; `view` points into `bytes` and
// `scales`, so the object must stay where it is (hold it by unique_ptr).
struct OwnedMatrix final : WeightStorage {
  AlignedVector<uint8_t> bytes;
  AlignedVector<float> scales;  // integer formats only
  Weight view;
};

// Converts `src` (any type; it is dequantized to F32 first) to `to`, which
// may be F32, F16, BF16, I8, I8_G32, I4_G*, W8A16_G32 or W4A16_G*. F16/BF16
// round to nearest even. I8, I8_G32 and I4_G* are symmetric: I8 scales each
// row by max|w| / 127, I8_G32 each group of 32 by max|w| / 127 and I4_G*
// each group by max|w| / 7, rounding to nearest (ties away from zero); an
// all-zero row or group gets scale 0. W8A16_G32 and W4A16_G* are
// asymmetric: each group's offset is its minimum and its scale
// (max - min) / 255 or / 15. Throws tidal::Error for a GGUF block type as
// the target.
std::unique_ptr<OwnedMatrix> quantize_matrix(const Weight& src, DType to);

// Row r of w as w.cols floats, for every type: the reference decoding (the
// block formats go through dequantize_row; code q of an integer format
// with scale s decodes to s * (q - offset)).
void dequantize_weight_row(const Weight& w, int64_t r, float* dst);

}  // namespace tidal
