#include "cpu/dequant_rows.h"

#include <cstring>

#include "cpu/dequant_simd.h"
#include "model/quantize_matrix.h"

namespace tidal::cpu {

namespace {

#if defined(TIDAL_CPU_AVX512)
using V = __m512;
constexpr int kLanes = 16;
void store(float* p, V v) { _mm512_storeu_ps(p, v); }
void store_first(float* p, V v, int64_t n) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v); }
// For the integer formats: the first kLanes bytes of `bytes` (codes
// 0..255) as floats; the kLanes I8 codes at p; the kLanes / 2 packed I4
// bytes at p.
V widen_codes(const __m128i bytes) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)); }
__m128i load_codes(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
__m128i load_packed(const uint8_t* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); }
V splat(float v) { return _mm512_set1_ps(v); }
V sub(V a, V b) { return _mm512_sub_ps(a, b); }
V mul(V a, V b) { return _mm512_mul_ps(a, b); }
#elif defined(TIDAL_CPU_AVX2)
using V = __m256;
constexpr int kLanes = 8;
void store(float* p, V v) { _mm256_storeu_ps(p, v); }
void store_first(float* p, V v, int64_t n) { _mm256_maskstore_ps(p, tail_mask8(n), v); }
V widen_codes(const __m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); }
__m128i load_codes(const uint8_t* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); }
__m128i load_packed(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return _mm_cvtsi32_si128(v);
}
V splat(float v) { return _mm256_set1_ps(v); }
V sub(V a, V b) { return _mm256_sub_ps(a, b); }
V mul(V a, V b) { return _mm256_mul_ps(a, b); }
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

// The integer formats decode as dequantize_weight_row does: code - offset
// is exact in float, then one multiply by the scale. Rows are padded to 64
// elements, so whole vectors of codes can always be read; only the stores
// stop at n.
void store_decoded(float* dst, int64_t k, int64_t n, V v) {
  if (k + kLanes <= n) {
    store(dst + k, v);
  } else {
    store_first(dst + k, v, n - k);
  }
}

void decode_i8_row(const uint8_t* codes, float scale, float* dst, int64_t n) {
  const V s = splat(scale), offset = splat(128.0f);
  for (int64_t k = 0; k < n; k += kLanes) store_decoded(dst, k, n, mul(s, sub(widen_codes(load_codes(codes + k)), offset)));
}

// As decode_i8_row with a scale per group of 32: kLanes codes never straddle a group.
void decode_i8_g32_row(const uint8_t* codes, const float* scales, float* dst, int64_t n) {
  const V offset = splat(128.0f);
  for (int64_t k = 0; k < n; k += kLanes) {
    store_decoded(dst, k, n, mul(splat(scales[k / 32]), sub(widen_codes(load_codes(codes + k)), offset)));
  }
}

// Element 2i is the low nibble of byte i: interleaving the low and high
// nibbles of kLanes / 2 bytes gives kLanes codes in element order, all in
// one group (groups are multiples of 32 elements).
void decode_i4_row(const uint8_t* packed, const float* scales, int64_t group, float* dst, int64_t n) {
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const V offset = splat(8.0f);
  for (int64_t k = 0; k < n; k += kLanes) {
    const __m128i bytes = load_packed(packed + k / 2);
    const __m128i codes = _mm_unpacklo_epi8(_mm_and_si128(bytes, low4), _mm_and_si128(_mm_srli_epi16(bytes, 4), low4));
    store_decoded(dst, k, n, mul(splat(scales[k / group]), sub(widen_codes(codes), offset)));
  }
}

#endif

}  // namespace

void dequantize_rows(const Weight& w, int64_t first, int64_t n, float* dst, int64_t dst_stride) {
  for (int64_t i = 0; i < n; ++i) {
    float* out = dst + i * dst_stride;
#if defined(TIDAL_CPU_SCALAR)
    dequantize_weight_row(w, first + i, out);
#else
    const uint8_t* src = w.row(first + i);
    switch (w.type) {
      case DType::F32: std::memcpy(out, src, sizeof(float) * size_t(w.cols)); break;
      case DType::F16: decode_row<DecodeF16>(src, out, w.cols); break;
      case DType::BF16: decode_row<DecodeBF16>(src, out, w.cols); break;
      case DType::Q8_0: decode_row<DecodeQ8_0>(src, out, w.cols); break;
      case DType::Q4_0: decode_row<DecodeQ4_0>(src, out, w.cols); break;
      case DType::Q4_1: decode_row<DecodeQ4_1>(src, out, w.cols); break;
      case DType::I8: decode_i8_row(src, w.row_scales(first + i)[0], out, w.cols); break;
      case DType::I8_G32: decode_i8_g32_row(src, w.row_scales(first + i), out, w.cols); break;
      case DType::I4_G32:
      case DType::I4_G64:
      case DType::I4_G128:
        decode_i4_row(src, w.row_scales(first + i), dtype_group_size(w.type), out, w.cols);
        break;
      // Only the embedding lookup decodes these rows (their matmul reads them in place).
      case DType::W8A16_G32:
      case DType::W4A16_G32:
      case DType::W4A16_G128: dequantize_weight_row(w, first + i, out); break;
    }
#endif
  }
}

}  // namespace tidal::cpu
