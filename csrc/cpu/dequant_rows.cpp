#include "cpu/dequant_rows.h"

#include <cstring>

#include "core/dequantize.h"
#include "cpu/dequant_simd.h"

namespace tidal::cpu {

namespace {

#if defined(TIDAL_CPU_AVX512)
using V = __m512;
constexpr int kLanes = 16;
void store(float* p, V v) { _mm512_storeu_ps(p, v); }
void store_first(float* p, V v, int64_t n) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v); }
#elif defined(TIDAL_CPU_AVX2)
using V = __m256;
constexpr int kLanes = 8;
void store(float* p, V v) { _mm256_storeu_ps(p, v); }
void store_first(float* p, V v, int64_t n) { _mm256_maskstore_ps(p, tail_mask8(n), v); }
#endif

#if !defined(TIDAL_CPU_SCALAR)

template <typename D>
void decode_row(const uint8_t* src, float* dst, int64_t n) {
  V v[D::kStep / kLanes];
  int64_t k = 0;
  for (; k + D::kStep <= n; k += D::kStep) {
    D::decode(src, k, v);
    for (int s = 0; s < D::kStep / kLanes; ++s) store(dst + k + s * kLanes, v[s]);
  }
  if constexpr (D::kStep == kLanes) {
    if (k < n) {
      D::decode_tail(src, k, n - k, v);
      store_first(dst + k, v[0], n - k);
    }
  }
}

#endif

}  // namespace

void dequantize_rows(const Weight& w, int64_t first, int64_t n, float* dst, int64_t dst_stride) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* src = w.row(first + i);
    float* out = dst + i * dst_stride;
#if defined(TIDAL_CPU_SCALAR)
    dequantize_row(w.type, src, out, w.cols);
#else
    switch (w.type) {
      case DType::F32: std::memcpy(out, src, sizeof(float) * size_t(w.cols)); break;
      case DType::F16: decode_row<DecodeF16>(src, out, w.cols); break;
      case DType::BF16: decode_row<DecodeBF16>(src, out, w.cols); break;
      case DType::Q8_0: decode_row<DecodeQ8_0>(src, out, w.cols); break;
      case DType::Q4_0: decode_row<DecodeQ4_0>(src, out, w.cols); break;
      case DType::Q4_1: decode_row<DecodeQ4_1>(src, out, w.cols); break;
    }
#endif
  }
}

}  // namespace tidal::cpu
