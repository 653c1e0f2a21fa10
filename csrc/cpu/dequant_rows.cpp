#include "cpu/dequant_rows.h"

#include <cstring>

#include "core/dequantize.h"
#include "cpu/simd.h"

namespace tidal::cpu {

namespace {

constexpr int kQK = 32;

#if defined(TIDAL_CPU_AVX512) || defined(TIDAL_CPU_AVX2)

float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

#endif

#if defined(TIDAL_CPU_AVX512)

__m512 bf16x16_to_f32(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

void row_f16(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * i))));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + 2 * i)));
  }
}

void row_bf16(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(dst + i, bf16x16_to_f32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * i))));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, src + 2 * i)));
  }
}

void row_q8_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, src += 34, dst += kQK) {
    const __m512 d = _mm512_set1_ps(load_f16(src));
    for (int h = 0; h < 2; ++h) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 + 16 * h));
      _mm512_storeu_ps(dst + 16 * h, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
    }
  }
}

// Codes 0..15 of a 4-bit block: element j < 16 is the low nibble of byte j,
// element j + 16 the high nibble.
void nibbles(const uint8_t* qs, __m512* lo, __m512* hi) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0f);
  *lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(bytes, mask)));
  *hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask)));
}

void row_q4_0(const uint8_t* src, float* dst, int64_t n) {
  const __m512 eight = _mm512_set1_ps(8.0f);
  for (int64_t b = 0; b < n / kQK; ++b, src += 18, dst += kQK) {
    const __m512 d = _mm512_set1_ps(load_f16(src));
    __m512 lo, hi;
    nibbles(src + 2, &lo, &hi);
    // q - 8 is exact in float, as the integer subtraction of the scalar path.
    _mm512_storeu_ps(dst, _mm512_mul_ps(d, _mm512_sub_ps(lo, eight)));
    _mm512_storeu_ps(dst + 16, _mm512_mul_ps(d, _mm512_sub_ps(hi, eight)));
  }
}

void row_q4_1(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, src += 20, dst += kQK) {
    const __m512 d = _mm512_set1_ps(load_f16(src));
    const __m512 m = _mm512_set1_ps(load_f16(src + 2));
    __m512 lo, hi;
    nibbles(src + 4, &lo, &hi);
    _mm512_storeu_ps(dst, _mm512_fmadd_ps(d, lo, m));
    _mm512_storeu_ps(dst + 16, _mm512_fmadd_ps(d, hi, m));
  }
}

#elif defined(TIDAL_CPU_AVX2)

void row_f16(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
  }
  for (; i < n; ++i) dst[i] = load_f16(src + 2 * i);
}

void row_bf16(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
  }
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_to_fp32(h);
  }
}

void row_q8_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, src += 34, dst += kQK) {
    const __m256 d = _mm256_set1_ps(load_f16(src));
    for (int j = 0; j < 4; ++j) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 2 + 8 * j));
      _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
    }
  }
}

// Codes 0..15 of a 4-bit block in element order (low nibbles are elements
// 0..15, high nibbles 16..31), eight per vector.
void nibbles(const uint8_t* qs, __m256 out[4]) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(bytes, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  out[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
  out[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
  out[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
  out[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

void row_q4_0(const uint8_t* src, float* dst, int64_t n) {
  const __m256 eight = _mm256_set1_ps(8.0f);
  for (int64_t b = 0; b < n / kQK; ++b, src += 18, dst += kQK) {
    const __m256 d = _mm256_set1_ps(load_f16(src));
    __m256 q[4];
    nibbles(src + 2, q);
    for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(d, _mm256_sub_ps(q[j], eight)));
  }
}

void row_q4_1(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, src += 20, dst += kQK) {
    const __m256 d = _mm256_set1_ps(load_f16(src));
    const __m256 m = _mm256_set1_ps(load_f16(src + 2));
    __m256 q[4];
    nibbles(src + 4, q);
    for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + 8 * j, _mm256_fmadd_ps(d, q[j], m));
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
      case DType::F16: row_f16(src, out, w.cols); break;
      case DType::BF16: row_bf16(src, out, w.cols); break;
      case DType::Q8_0: row_q8_0(src, out, w.cols); break;
      case DType::Q4_0: row_q4_0(src, out, w.cols); break;
      case DType::Q4_1: row_q4_1(src, out, w.cols); break;
    }
#endif
  }
}

}  // namespace tidal::cpu
