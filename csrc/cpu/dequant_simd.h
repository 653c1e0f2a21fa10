// Vector decoders for the stored weight formats, shared by the row
// dequantizer and the matmul kernels that decode weights in registers, so
// both produce the same floats (those of dequantize_row; Q4_1's d*q+m is one
// fused multiply-add, as the compiler contracts it there when FMA exists).
//
// Each decoder turns kStep elements of a row, starting at element k (a
// multiple of kStep), into kStep / lanes vectors. Plain 16-bit formats have
// kStep = one vector and a decode_tail for a partial last step (zeros past
// the row); block formats have kStep = 32, and rows are whole blocks.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/dequantize.h"
#include "cpu/simd.h"

namespace tidal::cpu {

#if !defined(TIDAL_CPU_SCALAR)

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

#endif

#if defined(TIDAL_CPU_AVX512)

struct DecodeF16 {
  static constexpr int kStep = 16;
  static void decode(const uint8_t* row, int64_t k, __m512* out) {
    out[0] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
  }
  static void decode_tail(const uint8_t* row, int64_t k, int64_t n, __m512* out) {
    out[0] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << n) - 1), row + 2 * k));
  }
};

struct DecodeBF16 {
  static constexpr int kStep = 16;
  static __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static void decode(const uint8_t* row, int64_t k, __m512* out) {
    out[0] = widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
  }
  static void decode_tail(const uint8_t* row, int64_t k, int64_t n, __m512* out) {
    out[0] = widen(_mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << n) - 1), row + 2 * k));
  }
};

struct DecodeQ8_0 {
  static constexpr int kStep = 32;
  static void decode(const uint8_t* row, int64_t k, __m512* out) {
    const uint8_t* b = row + k / 32 * 34;
    const __m512 d = _mm512_set1_ps(load_f16(b));
    for (int h = 0; h < 2; ++h) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + 16 * h));
      out[h] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)));
    }
  }
};

// A 4-bit block decodes through a 16-entry table of its possible values,
// computed once per block with the same arithmetic as element by element
// (so the same floats), then looked up with a permute for each half:
// element j < 16 is the low nibble of byte j, element j + 16 its high
// nibble. The permute reads only the low 4 bits of each index, so neither
// half needs masking, and a shift rather than a second widening (a shuffle,
// the scarce unit in this loop) yields the high nibbles.
inline void lookup_nibbles(const uint8_t* qs, __m512 table, __m512* out) {
  const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  out[0] = _mm512_permutexvar_ps(bytes, table);
  out[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table);
}

inline __m512 codes() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }

struct DecodeQ4_0 {
  static constexpr int kStep = 32;
  static void decode(const uint8_t* row, int64_t k, __m512* out) {
    const uint8_t* b = row + k / 32 * 18;
    // q - 8 is exact in float, like the integer subtraction of dequantize_row.
    const __m512 table = _mm512_mul_ps(_mm512_set1_ps(load_f16(b)), _mm512_sub_ps(codes(), _mm512_set1_ps(8.0f)));
    lookup_nibbles(b + 2, table, out);
  }
};

struct DecodeQ4_1 {
  static constexpr int kStep = 32;
  static void decode(const uint8_t* row, int64_t k, __m512* out) {
    const uint8_t* b = row + k / 32 * 20;
    int32_t dm_bits;
    std::memcpy(&dm_bits, b, 4);
    const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(dm_bits));  // d and m in one conversion
    const __m512 table = _mm512_fmadd_ps(_mm512_broadcastss_ps(dm), codes(), _mm512_broadcastss_ps(_mm_movehdup_ps(dm)));
    lookup_nibbles(b + 4, table, out);
  }
};

#elif defined(TIDAL_CPU_AVX2)

// AVX2 has no masked 16-bit load: the last partial step converts element by
// element with the scalar conversions, which give the same values.
template <float (*kConvert)(uint16_t)>
void decode_tail_scalar(const uint8_t* row, int64_t k, int64_t n, __m256* out) {
  alignas(32) float v[8] = {};
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, row + 2 * (k + i), 2);
    v[i] = kConvert(h);
  }
  out[0] = _mm256_load_ps(v);
}

struct DecodeF16 {
  static constexpr int kStep = 8;
  static void decode(const uint8_t* row, int64_t k, __m256* out) {
    out[0] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
  }
  static void decode_tail(const uint8_t* row, int64_t k, int64_t n, __m256* out) {
    decode_tail_scalar<fp16_to_fp32>(row, k, n, out);
  }
};

struct DecodeBF16 {
  static constexpr int kStep = 8;
  static void decode(const uint8_t* row, int64_t k, __m256* out) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k));
    out[0] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static void decode_tail(const uint8_t* row, int64_t k, int64_t n, __m256* out) {
    decode_tail_scalar<bf16_to_fp32>(row, k, n, out);
  }
};

struct DecodeQ8_0 {
  static constexpr int kStep = 32;
  static void decode(const uint8_t* row, int64_t k, __m256* out) {
    const uint8_t* b = row + k / 32 * 34;
    const __m256 d = _mm256_set1_ps(load_f16(b));
    for (int j = 0; j < 4; ++j) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + 8 * j));
      out[j] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
    }
  }
};

// The 32 codes (0..15) of a 4-bit block in element order: low nibbles are
// elements 0..15, high nibbles 16..31.
inline void nibbles(const uint8_t* qs, __m256* out) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(bytes, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  out[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
  out[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
  out[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
  out[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

struct DecodeQ4_0 {
  static constexpr int kStep = 32;
  static void decode(const uint8_t* row, int64_t k, __m256* out) {
    const uint8_t* b = row + k / 32 * 18;
    const __m256 d = _mm256_set1_ps(load_f16(b)), eight = _mm256_set1_ps(8.0f);
    nibbles(b + 2, out);
    for (int j = 0; j < 4; ++j) out[j] = _mm256_mul_ps(d, _mm256_sub_ps(out[j], eight));
  }
};

struct DecodeQ4_1 {
  static constexpr int kStep = 32;
  static void decode(const uint8_t* row, int64_t k, __m256* out) {
    const uint8_t* b = row + k / 32 * 20;
    const __m256 d = _mm256_set1_ps(load_f16(b)), m = _mm256_set1_ps(load_f16(b + 2));
    nibbles(b + 4, out);
    for (int j = 0; j < 4; ++j) out[j] = _mm256_fmadd_ps(d, out[j], m);
  }
};

#endif

}  // namespace tidal::cpu
