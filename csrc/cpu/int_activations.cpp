#include "cpu/int_activations.h"

#include <algorithm>
#include <cmath>

namespace tidal::cpu {

namespace {

constexpr float kCodeMax = 127.0f;

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

#if defined(TIDAL_CPU_AVX512)

// x[k .. k+16), zeros past cols.
__m512 load_x(const float* x, int64_t k, int64_t cols) {
  if (k + 16 <= cols) return _mm512_loadu_ps(x + k);
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << (cols - k)) - 1), x + k);
}

float absmax(const float* x, int64_t cols) {
  __m512 m = _mm512_setzero_ps();
  for (int64_t k = 0; k < cols; k += 16) m = _mm512_max_ps(m, _mm512_abs_ps(load_x(x, k, cols)));
  return _mm512_reduce_max_ps(m);
}

// The codes of x[k .. k+16): round(x / divisor), ties away from zero (there
// is no such rounding mode: truncate, then step away from zero when the
// exact remainder is at least one half), clamped to +-127.
__m512i codes_of(const float* x, int64_t k, int64_t cols, __m512 divisor, float code_max = kCodeMax) {
  if (k >= cols) return _mm512_setzero_si512();
  const __m512 v = _mm512_div_ps(load_x(x, k, cols), divisor);
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 away = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 unit = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
  const __m512 r = _mm512_mask_add_ps(t, away, t, unit);
  return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-code_max)), _mm512_set1_ps(code_max)));
}

int32_t write_i8(const float* x, int64_t cols, int64_t padded, __m512 divisor, int8_t* codes) {
  __m512i sum = _mm512_setzero_si512();
  for (int64_t k = 0; k < padded; k += 16) {
    const __m512i q = codes_of(x, k, cols, divisor);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + k), _mm512_cvtepi32_epi8(q));
    sum = _mm512_add_epi32(sum, q);
  }
  return _mm512_reduce_add_epi32(sum);
}

// The 32 codes of x[k .. k+32) at codes[k ..).
void write_block(const float* x, int64_t k, int64_t cols, float divisor, int8_t* codes) {
  const __m512 d = _mm512_set1_ps(divisor);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + k), _mm512_cvtepi32_epi8(codes_of(x, k, cols, d)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + k + 16), _mm512_cvtepi32_epi8(codes_of(x, k + 16, cols, d)));
}

// -128 times the sum of each 4 codes: what the I8_G32 kernel's dpbusd lanes
// start from, so that the offset of its unsigned weight codes cancels.
void write_i8_lane_corrections(const int8_t* codes, int64_t padded, int32_t* neg_corrections) {
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t k = 0; k < padded; k += 64) {
    const __m512i lane_sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, _mm512_loadu_si512(codes + k));
    _mm512_storeu_si512(neg_corrections + k / 4, _mm512_sub_epi32(_mm512_setzero_si512(), lane_sums));
  }
}

void write_i4(const float* x, int64_t cols, int64_t padded, __m512 divisor, int8_t* codes, int32_t* neg_corrections) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i eight = _mm512_set1_epi8(8);
  for (int64_t c = 0; c * kI4Chunk < padded; ++c) {
    const int64_t first = c * kI4Chunk, n = std::min(kI4Chunk, padded - first);
    int8_t* lo = codes + first;
    int8_t* hi = lo + kI4Chunk / 2;
    for (int64_t h = 0; h < n / 32; ++h) {
      const __m512i a = codes_of(x, first + 32 * h, cols, divisor), b = codes_of(x, first + 32 * h + 16, cols, divisor);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(lo + 16 * h), _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(a, even, b)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(hi + 16 * h), _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(a, odd, b)));
    }
    if (n < kI4Chunk) {  // half a chunk: the kernel reads whole halves
      std::memset(lo + n / 2, 0, size_t(kI4Chunk - n) / 2);
      std::memset(hi + n / 2, 0, size_t(kI4Chunk - n) / 2);
    }
    // Lane j of a dpbusd sums bytes 4j..4j+3 of both halves, as the kernel's does.
    __m512i lane_sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, _mm512_loadu_si512(lo));
    lane_sums = _mm512_dpbusd_epi32(lane_sums, eight, _mm512_loadu_si512(hi));
    _mm512_storeu_si512(neg_corrections + 16 * c, _mm512_sub_epi32(_mm512_setzero_si512(), lane_sums));
  }
}

#elif defined(TIDAL_CPU_AVX2)

__m256 load_x(const float* x, int64_t k, int64_t cols) {
  if (k + 8 <= cols) return _mm256_loadu_ps(x + k);
  return _mm256_maskload_ps(x + k, tail_mask8(cols - k));
}

float absmax(const float* x, int64_t cols) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m = _mm256_setzero_ps();
  for (int64_t k = 0; k < cols; k += 8) m = _mm256_max_ps(m, _mm256_and_ps(load_x(x, k, cols), magnitude));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

// As the AVX-512 codes_of, 8 at a time.
__m256i codes_of(const float* x, int64_t k, int64_t cols, __m256 divisor, float code_max = kCodeMax) {
  if (k >= cols) return _mm256_setzero_si256();
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 v = _mm256_div_ps(load_x(x, k, cols), divisor);
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 away = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 unit = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, sign));
  const __m256 r = _mm256_add_ps(t, _mm256_and_ps(away, unit));
  return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-code_max)), _mm256_set1_ps(code_max)));
}

// The 32 codes of x[k .. k+32) as bytes in element order. The packs work
// within 128-bit halves, so the dwords come out as 0,2,4,6 | 1,3,5,7 of
// the element order and one permute puts them back.
__m256i byte_codes(const float* x, int64_t k, int64_t cols, __m256 divisor) {
  const __m256i q01 = _mm256_packs_epi32(codes_of(x, k, cols, divisor), codes_of(x, k + 8, cols, divisor));
  const __m256i q23 = _mm256_packs_epi32(codes_of(x, k + 16, cols, divisor), codes_of(x, k + 24, cols, divisor));
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q01, q23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void write_block(const float* x, int64_t k, int64_t cols, float divisor, int8_t* codes) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + k), byte_codes(x, k, cols, _mm256_set1_ps(divisor)));
}

int32_t write_i8(const float* x, int64_t cols, int64_t padded, __m256 divisor, int8_t* codes) {
  for (int64_t k = 0; k < padded; k += 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + k), byte_codes(x, k, cols, divisor));
  }
  return 0;  // the AVX2 kernel multiplies signed weights: no offset to correct
}

void write_i4(const float* x, int64_t cols, int64_t padded, __m256 divisor, int8_t* codes, int32_t* neg_corrections) {
  // Within each 128-bit half: even bytes to the low 8, odd bytes to the high 8.
  const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,  //
                                         0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m256i eight = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
  for (int64_t c = 0; c * kI4Chunk < padded; ++c) {
    int8_t* lo = codes + c * kI4Chunk;
    int8_t* hi = lo + kI4Chunk / 2;
    for (int64_t h = 0; h < 2; ++h) {
      const __m256i bytes = _mm256_shuffle_epi8(byte_codes(x, c * kI4Chunk + 32 * h, cols, divisor), split);
      const __m256i halves = _mm256_permute4x64_epi64(bytes, _MM_SHUFFLE(3, 1, 2, 0));  // evens | odds
      _mm_storeu_si128(reinterpret_cast<__m128i*>(lo + 16 * h), _mm256_castsi256_si128(halves));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(hi + 16 * h), _mm256_extracti128_si256(halves, 1));
    }
    const __m256i pairs =
        _mm256_add_epi16(_mm256_maddubs_epi16(eight, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo))),
                         _mm256_maddubs_epi16(eight, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi))));
    const __m256i lane_sums = _mm256_madd_epi16(pairs, ones);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(neg_corrections + 8 * c),
                        _mm256_sub_epi32(_mm256_setzero_si256(), lane_sums));
  }
}

#else  // TIDAL_CPU_SCALAR

float absmax(const float* x, int64_t cols) {
  float m = 0.0f;
  for (int64_t k = 0; k < cols; ++k) m = std::max(m, std::fabs(x[k]));
  return m;
}

// x[k .. k+16) as int32 codes of at most code_max in magnitude.
void codes16_of(const float* x, int64_t k, int64_t cols, float divisor, float code_max, int32_t* out) {
  for (int64_t i = 0; i < 16; ++i) {
    out[i] = k + i < cols ? static_cast<int32_t>(std::clamp(std::round(x[k + i] / divisor), -code_max, code_max)) : 0;
  }
}

// Every format in element order; the scalar kernels need nothing else.
void write_codes(const float* x, int64_t cols, int64_t padded, float divisor, int8_t* codes) {
  for (int64_t k = 0; k < cols; ++k) codes[k] = static_cast<int8_t>(std::clamp(std::round(x[k] / divisor), -kCodeMax, kCodeMax));
  std::fill(codes + cols, codes + padded, int8_t(0));
}

void write_block(const float* x, int64_t k, int64_t cols, float divisor, int8_t* codes) {
  const int64_t n = std::clamp<int64_t>(cols - k, 0, kActivationBlock);
  write_codes(x + k, n, kActivationBlock, divisor, codes + k);
}

#endif

// W8A16_G32 / W4A16_G*: int16 codes of one token (layout in the header)
// and the sum of each weight group's codes, added up in int32 per 16 codes
// (exact in float: |sum| <= 128 * 32767 < 2^24).
void write_a16(DType weight_type, const float* x, int64_t cols, int64_t padded, float divisor, int16_t* codes,
               float* group_sums, int64_t sum_slots) {
  const float code_max = static_cast<float>(kA16CodeMax);
  [[maybe_unused]] const bool nibbles = dtype_packs_nibbles(weight_type);
  const int64_t g = dtype_group_size(weight_type);
  std::fill(group_sums, group_sums + sum_slots, 0.0f);
  for (int64_t k = 0; k < padded; k += kA16Chunk) {
    int32_t sums[4];  // of elements 16i .. 16i+15 of the chunk
#if defined(TIDAL_CPU_AVX512)
    const __m512 d = _mm512_set1_ps(divisor);
    __m512i q[4];
    for (int i = 0; i < 4; ++i) {
      q[i] = codes_of(x, k + 16 * i, cols, d, code_max);
      sums[i] = _mm512_reduce_add_epi32(q[i]);
    }
    // Where each 16 of the chunk's 64 codes go, 16 apart: the even elements
    // then the odd ones (W4A16), or the quarters 0, 2, 1, 3 (W8A16).
    __m512i out[4] = {q[0], q[2], q[1], q[3]};
    if (nibbles) {
      const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
      const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
      out[0] = _mm512_permutex2var_epi32(q[0], even, q[1]);
      out[1] = _mm512_permutex2var_epi32(q[2], even, q[3]);
      out[2] = _mm512_permutex2var_epi32(q[0], odd, q[1]);
      out[3] = _mm512_permutex2var_epi32(q[2], odd, q[3]);
    }
    for (int i = 0; i < 4; ++i) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + k + 16 * i), _mm512_cvtepi32_epi16(out[i]));
    }
#else
    alignas(32) int32_t q[kA16Chunk];
#if defined(TIDAL_CPU_AVX2)
    const __m256 d = _mm256_set1_ps(divisor);
    for (int i = 0; i < 8; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(q + 8 * i), codes_of(x, k + 8 * i, cols, d, code_max));
    constexpr int64_t kQuarterAt[4] = {0, 2, 1, 3};
    for (int64_t i = 0; i < kA16Chunk; ++i) {
      codes[k + (nibbles ? (i % 2) * 32 + i / 2 : kQuarterAt[i / 16] * 16 + i % 16)] = static_cast<int16_t>(q[i]);
    }
#else
    for (int i = 0; i < 4; ++i) codes16_of(x, k + 16 * i, cols, divisor, code_max, q + 16 * i);
    for (int64_t i = 0; i < kA16Chunk; ++i) codes[k + i] = static_cast<int16_t>(q[i]);
#endif
    for (int i = 0; i < 4; ++i) {
      sums[i] = 0;
      for (int j = 0; j < 16; ++j) sums[i] += q[16 * i + j];
    }
#endif
    for (int i = 0; i < 4; ++i) group_sums[(k + 16 * i) / g] += static_cast<float>(sums[i]);
  }
}

// I8_G32: each block of kActivationBlock elements quantized with its own
// scale, as quantize_activations does a whole token. Blocks wholly in the
// padding get scale 0 and codes 0.
void write_blocks(const float* x, int64_t cols, int64_t padded, int8_t* codes, float* block_scales) {
  for (int64_t k = 0; k < padded; k += kActivationBlock) {
    const int64_t n = std::clamp<int64_t>(cols - k, 0, kActivationBlock);
    const float scale = n > 0 ? absmax(x + k, n) / kCodeMax : 0.0f;
    block_scales[k / kActivationBlock] = scale;
    write_block(x, k, cols, scale != 0.0f ? scale : 1.0f, codes);
  }
}

}  // namespace

ActivationLayout activation_layout(DType weight_type, int64_t cols) {
  ActivationLayout l;
  const size_t padded = size_t(dtype_padded_cols(weight_type, cols));
  l.code_bytes = padded;
#if !defined(TIDAL_CPU_SCALAR)
  if (dtype_is_int4(weight_type)) {
    l.code_bytes = round_up(padded, size_t(kI4Chunk));
    l.correction_bytes = l.code_bytes / 8 * sizeof(int32_t);  // one lane per 8 codes
  }
#endif
  if (dtype_is_a16(weight_type)) {
    l.code_bytes = padded * sizeof(int16_t);
    l.group_sum_bytes = round_up(padded / size_t(dtype_group_size(weight_type)), size_t(kGroupSumAlign)) * sizeof(float);
    l.stride = round_up(l.code_bytes + l.group_sum_bytes + sizeof(float) + sizeof(int32_t), 64);
    return l;
  }
  if (weight_type == DType::I8_G32) {
#if defined(TIDAL_CPU_AVX512)
    l.correction_bytes = padded / 4 * sizeof(int32_t);  // one lane per 4 codes
#endif
    l.block_scale_bytes = padded / size_t(kActivationBlock) * sizeof(float);
    l.stride = round_up(l.code_bytes + l.correction_bytes + l.block_scale_bytes, 64);
    return l;
  }
  l.stride = round_up(l.code_bytes + l.correction_bytes + sizeof(float) + sizeof(int32_t), 64);
  return l;
}

void quantize_activations(DType weight_type, const ActivationLayout& layout, const float* x, int64_t cols, int64_t t0,
                          int64_t t1, uint8_t* buffer) {
  const int64_t padded = dtype_padded_cols(weight_type, cols);
  for (int64_t t = t0; t < t1; ++t) {
    const float* xt = x + t * cols;
    uint8_t* dst = buffer + size_t(t) * layout.stride;
    auto* codes = reinterpret_cast<int8_t*>(dst);
    if (weight_type == DType::I8_G32) {
      write_blocks(xt, cols, padded, codes, reinterpret_cast<float*>(dst + layout.code_bytes + layout.correction_bytes));
#if defined(TIDAL_CPU_AVX512)
      write_i8_lane_corrections(codes, padded, reinterpret_cast<int32_t*>(dst + layout.code_bytes));
#endif
      continue;
    }
    if (dtype_is_a16(weight_type)) {
      const float scale = absmax(xt, cols) / static_cast<float>(kA16CodeMax);
      write_a16(weight_type, xt, cols, padded, scale != 0.0f ? scale : 1.0f, reinterpret_cast<int16_t*>(dst),
                reinterpret_cast<float*>(dst + layout.code_bytes), int64_t(layout.group_sum_bytes / sizeof(float)));
      std::memcpy(dst + layout.code_bytes + layout.group_sum_bytes, &scale, sizeof(scale));
      continue;
    }
    const float scale = absmax(xt, cols) / kCodeMax;
    // An all-zero row divides by 1 instead of 0, which gives its codes of 0.
    const float divisor = scale != 0.0f ? scale : 1.0f;
    int32_t sum = 0;
#if defined(TIDAL_CPU_SCALAR)
    write_codes(xt, cols, padded, divisor, codes);
#else
#if defined(TIDAL_CPU_AVX512)
    const __m512 d = _mm512_set1_ps(divisor);
#else
    const __m256 d = _mm256_set1_ps(divisor);
#endif
    if (weight_type == DType::I8) {
      sum = write_i8(xt, cols, padded, d, codes);
    } else {
      write_i4(xt, cols, padded, d, codes, reinterpret_cast<int32_t*>(dst + layout.code_bytes));
    }
#endif
    std::memcpy(dst + layout.code_bytes + layout.correction_bytes, &scale, sizeof(scale));
    std::memcpy(dst + layout.code_bytes + layout.correction_bytes + sizeof(float), &sum, sizeof(sum));
  }
}

}  // namespace tidal::cpu
