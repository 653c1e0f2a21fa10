#include "model/quantize_matrix.h"

#include <algorithm>
#include <cmath>

#include "core/dequantize.h"
#include "core/error.h"

namespace tidal {

namespace {

constexpr int kI8Offset = 128;
constexpr int kI4Offset = 8;

// Symmetric codes for values v[0..n): scale = max|v| / qmax, code =
// round(v / scale) + offset. Returns the scale (0 for an all-zero run).
float quantize_symmetric(const float* v, int64_t n, int qmax, int offset, uint8_t* codes) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(v[i]));
  const float scale = amax / static_cast<float>(qmax);
  for (int64_t i = 0; i < n; ++i) {
    const float q = scale != 0.0f ? std::round(v[i] / scale) : 0.0f;
    codes[i] = static_cast<uint8_t>(std::clamp(static_cast<int>(q), -qmax, qmax) + offset);
  }
  return scale;
}

// Asymmetric codes for values v[0..n): scale = (max - min) / qmax, offset =
// min, code = round((v - min) / scale) in [0, qmax]. A run of equal values
// gets scale 0 and codes 0, which decode to the value itself.
void quantize_asymmetric(const float* v, int64_t n, int qmax, uint8_t* codes, float* scale, float* offset) {
  const auto [lo, hi] = std::minmax_element(v, v + n);
  *offset = *lo;
  *scale = (*hi - *lo) / static_cast<float>(qmax);
  for (int64_t i = 0; i < n; ++i) {
    const float q = *scale != 0.0f ? std::round((v[i] - *lo) / *scale) : 0.0f;
    codes[i] = static_cast<uint8_t>(std::clamp(static_cast<int>(q), 0, qmax));
  }
}

// Packs codes (one per byte) two per byte: element 2i in the low nibble of byte i.
void pack_nibbles(const std::vector<uint8_t>& codes, uint8_t* dst) {
  for (size_t i = 0; i < codes.size() / 2; ++i) dst[i] = static_cast<uint8_t>(codes[2 * i] | (codes[2 * i + 1] << 4));
}

// W8A16_G32 / W4A16_G*: padding groups get scale and offset 0 (they meet
// zero activations), as do the padded codes of a ragged last group.
void quantize_asymmetric_row(DType to, const float* src, int64_t cols, uint8_t* dst, float* scales) {
  const int64_t padded = dtype_padded_cols(to, cols), g = dtype_group_size(to), groups = padded / g;
  const bool nibbles = dtype_packs_nibbles(to);
  std::vector<uint8_t> codes(static_cast<size_t>(padded), 0);
  for (int64_t k = 0; k < groups; ++k) {
    const int64_t begin = k * g, n = std::clamp<int64_t>(cols - begin, 0, g);
    scales[k] = scales[groups + k] = 0.0f;
    if (n > 0) quantize_asymmetric(src + begin, n, nibbles ? 15 : 255, codes.data() + begin, &scales[k], &scales[groups + k]);
  }
  if (nibbles) {
    pack_nibbles(codes, dst);
  } else {
    std::copy(codes.begin(), codes.end(), dst);
  }
}

void quantize_int_row(DType to, const float* src, int64_t cols, uint8_t* dst, float* scales) {
  if (dtype_is_a16(to)) {
    quantize_asymmetric_row(to, src, cols, dst, scales);
    return;
  }
  const int64_t padded = dtype_padded_cols(to, cols);
  if (to == DType::I8) {
    std::fill(dst, dst + padded, static_cast<uint8_t>(kI8Offset));
    scales[0] = quantize_symmetric(src, cols, 127, kI8Offset, dst);
    return;
  }
  const int64_t g = dtype_group_size(to);
  if (to == DType::I8_G32) {
    std::fill(dst, dst + padded, static_cast<uint8_t>(kI8Offset));
    for (int64_t k = 0; k * g < padded; ++k) {
      const int64_t begin = k * g;
      const int64_t n = std::clamp<int64_t>(cols - begin, 0, g);
      scales[k] = n > 0 ? quantize_symmetric(src + begin, n, 127, kI8Offset, dst + begin) : 0.0f;
    }
    return;
  }
  std::vector<uint8_t> codes(static_cast<size_t>(padded), static_cast<uint8_t>(kI4Offset));
  for (int64_t k = 0; k * g < padded; ++k) {
    const int64_t begin = k * g;
    const int64_t n = std::clamp<int64_t>(cols - begin, 0, g);
    scales[k] = n > 0 ? quantize_symmetric(src + begin, n, 7, kI4Offset, codes.data() + begin) : 0.0f;
  }
  pack_nibbles(codes, dst);
}

}  // namespace

void dequantize_weight_row(const Weight& w, int64_t r, float* dst) {
  if (!dtype_is_int(w.type)) {
    dequantize_row(w.type, w.row(r), dst, w.cols);
    return;
  }
  const uint8_t* q = w.row(r);
  const float* s = w.row_scales(r);
  if (w.type == DType::I8) {
    for (int64_t i = 0; i < w.cols; ++i) dst[i] = s[0] * static_cast<float>(int(q[i]) - kI8Offset);
    return;
  }
  const int64_t g = dtype_group_size(w.type);
  auto code = [&](int64_t i) -> int {
    if (!dtype_packs_nibbles(w.type)) return q[i];
    return (i % 2 == 0) ? (q[i / 2] & 0x0f) : (q[i / 2] >> 4);
  };
  if (dtype_is_a16(w.type)) {
    const int64_t groups = dtype_padded_cols(w.type, w.cols) / g;
    for (int64_t i = 0; i < w.cols; ++i) dst[i] = std::fma(s[i / g], static_cast<float>(code(i)), s[groups + i / g]);
    return;
  }
  const int offset = w.type == DType::I8_G32 ? kI8Offset : kI4Offset;
  for (int64_t i = 0; i < w.cols; ++i) dst[i] = s[i / g] * static_cast<float>(code(i) - offset);
}

std::unique_ptr<OwnedMatrix> quantize_matrix(const Weight& src, DType to) {
  if (to == DType::Q8_0 || to == DType::Q4_0 || to == DType::Q4_1) {
    throw Error(ErrorCode::kUnsupported,
                "cannot derive " + std::string(dtype_name(to)) +
                    ": variants are f32, f16, bf16, int8, int8-g32, int4-g*, w8a16-g32 or w4a16-g*");
  }
  auto out = std::make_unique<OwnedMatrix>();
  Weight& v = out->view;
  v.type = to;
  v.rows = src.rows;
  v.cols = src.cols;
  out->bytes.resize(v.bytes());
  out->scales.resize(static_cast<size_t>(v.rows * dtype_scales_per_row(to, v.cols)));
  std::vector<float> row(static_cast<size_t>(src.cols));
  for (int64_t r = 0; r < src.rows; ++r) {
    dequantize_weight_row(src, r, row.data());
    uint8_t* dst = out->bytes.data() + static_cast<size_t>(r) * v.row_bytes();
    if (dtype_is_int(to)) {
      quantize_int_row(to, row.data(), src.cols, dst, out->scales.data() + r * dtype_scales_per_row(to, v.cols));
    } else {
      quantize_row(to, row.data(), dst, src.cols);
    }
  }
  v.data = out->bytes.data();
  v.scales = out->scales.empty() ? nullptr : out->scales.data();
  return out;
}

}  // namespace tidal
