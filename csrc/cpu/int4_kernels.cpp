// W4A8: I4_G* weights (code = q + 8, two per byte) times int8 activations.
//
// A load of packed weight bytes splits into its low nibbles (the even
// elements) and high nibbles (the odd ones) with a shift and two masks; the
// activations are stored as even and odd halves to match
// (cpu/int_activations.h). The unsigned codes multiply the signed
// activations directly (dpbusd on AVX-512; maddubs on AVX2, where
// 15 * 127 * 4 cannot saturate int16), and each 32-bit lane starts from
// -8 times its activations' sum, which removes the offset exactly.
//
// A lane holds 8 consecutive elements of one group, so after each chunk it
// is converted to float and multiplied by its group's scale into a float
// accumulator lane (cpu/int_kernels.h has the resulting order).
//
// Same tuning as dot_kernels.cpp, for the same reason: Zen tuning folds a
// load into every multiply-add that uses an operand.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX2__)
#pragma GCC target("tune=generic")
#endif

#include <algorithm>
#include <string>
#include <type_traits>

#include "core/error.h"
#include "cpu/int_kernels.h"
#include "cpu/int_tiles.h"

namespace tidal::cpu {

namespace {

#if !defined(TIDAL_CPU_SCALAR)

template <int G>
struct Int4Rows {
  // Row r of the range is codes + r * row_bytes with scales
  // scales + r * groups: the sizes are worked out once here, not per tile
  // (they divide by the padding unit, at run time).
  const uint8_t* codes;
  size_t row_bytes;
  const float* scales;
  int64_t groups;
  int64_t padded;
  const QuantizedActivations& x;
  int64_t token0;
  float* y;
  int64_t ys;

  Int4Rows(const Weight& w, int64_t first_row, const QuantizedActivations& x, int64_t first_token, float* y, int64_t ys)
      : codes(w.row(first_row)), row_bytes(w.row_bytes()), scales(w.row_scales(first_row)),
        groups(dtype_scales_per_row(w.type, w.cols)), padded(dtype_padded_cols(w.type, w.cols)), x(x),
        token0(first_token), y(y), ys(ys) {}

  static constexpr int64_t kChunkBytes = kI4Chunk / 2;  // packed weight bytes per chunk
  static constexpr int kLanesPerGroup = G / 8 < kIntLanes ? G / 8 : kIntLanes;

#if defined(TIDAL_CPU_AVX512)
  // Each row and token needs pointers in general registers (16 of them);
  // only the float accumulation carries from chunk to chunk, so 4 rows
  // already cover its latency.
  static constexpr int tile_rows(int tokens) { return 4; }

  // The scale of each lane of chunk c (lane j holds chunk elements 8j ..
  // 8j+7). A half chunk has groups only for its first half of lanes; the
  // other lanes multiply zeros, so they get scale 0 rather than a read past
  // the row's scales.
  template <bool kHalf>
  static __m512 lane_scales(const float* s, int64_t c) {
    if constexpr (G >= kI4Chunk) {
      return _mm512_set1_ps(s[c * kI4Chunk / G]);
    } else {
      constexpr int kGroups = kI4Chunk / G;
      constexpr int kLoaded = kHalf ? kGroups / 2 : kGroups;
      const __m128 v = _mm_maskz_loadu_ps(static_cast<__mmask8>((1u << kLoaded) - 1), s + c * kGroups);
      constexpr unsigned kShift = kLanesPerGroup == 8 ? 3 : 2;  // lane j is in group j / kLanesPerGroup
      const __m512i group_of_lane =
          _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), kShift);
      return _mm512_permutexvar_ps(group_of_lane, _mm512_zextps128_ps512(v));
    }
  }

  // Packed codes of chunk c: 64 bytes, or the 32 of a half chunk, zero-extended.
  template <bool kHalf>
  static __m512i chunk_bytes(const uint8_t* row, int64_t c) {
    if constexpr (kHalf) {
      return _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * kChunkBytes)));
    } else {
      return _mm512_loadu_si512(row + c * kChunkBytes);
    }
  }

  static __m512i lane_dot(__m512i start, __m512i lo, __m512i hi, __m512i x_lo, __m512i x_hi) {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, lo, x_lo), hi, x_hi);
  }
#else
  // 16 ymm registers: four float accumulators plus nibbles, tokens and temporaries.
  static constexpr int tile_rows(int tokens) { return tokens == 1 ? 4 : 2; }

  template <bool kHalf>
  static __m256 lane_scales(const float* s, int64_t c) {
    if constexpr (G >= kI4Chunk) {
      return _mm256_set1_ps(s[c * kI4Chunk / G]);
    } else {  // G = 32: lanes 0-3 and 4-7 are two groups
      return _mm256_set_m128(_mm_set1_ps(s[2 * c + 1]), _mm_set1_ps(s[2 * c]));
    }
  }

  template <bool kHalf>
  static __m256i chunk_bytes(const uint8_t* row, int64_t c) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * kChunkBytes));
  }

  static __m256i lane_dot(__m256i start, __m256i lo, __m256i hi, __m256i x_lo, __m256i x_hi) {
    const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, x_lo), _mm256_maddubs_epi16(hi, x_hi));
    return _mm256_add_epi32(start, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
#endif

  template <int R, int T>
  void tile(int64_t first, int64_t step, int nr, int64_t t) const {
    const uint8_t* rows[R];
    const float* row_scales[R];
    for (int r = 0; r < R; ++r) {
      const int64_t row = first + std::min(r, nr - 1) * step;
      rows[r] = codes + size_t(row) * row_bytes;
      row_scales[r] = scales + row * groups;
    }
    const int8_t* xs[T];
    const int32_t* corrections[T];
    for (int j = 0; j < T; ++j) {
      xs[j] = x.codes(token0 + t + j);
      corrections[j] = x.neg_corrections(token0 + t + j);
    }
    FloatVec acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) acc[r][j] = FloatVec{};
    }
    auto chunk = [&](int64_t c, auto half) {
      constexpr bool kHalf = decltype(half)::value;
      IntVec x_lo[T], x_hi[T];
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) {
        x_lo[j] = load_int(xs[j] + c * kI4Chunk);
        x_hi[j] = load_int(xs[j] + c * kI4Chunk + kI4Chunk / 2);
      }
      const IntVec low4 = as_bytes(0x0f);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const IntVec packed = chunk_bytes<kHalf>(rows[r], c);
        const IntVec lo = and_int(packed, low4), hi = and_int(shift_right_4(packed), low4);
        const FloatVec s = lane_scales<kHalf>(row_scales[r], c);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) {
          const IntVec dot = lane_dot(load_int(corrections[j] + c * kIntLanes), lo, hi, x_lo[j], x_hi[j]);
          acc[r][j] = fmadd_float(to_float(dot), s, acc[r][j]);
        }
      }
    };
    const int64_t whole = padded / kI4Chunk;
    for (int64_t c = 0; c < whole; ++c) chunk(c, std::false_type{});
    if constexpr (G < kI4Chunk) {
      if (whole * kI4Chunk < padded) chunk(whole, std::true_type{});
    }
    alignas(64) float sums[kIntLanes];
    reduce_tile<R, T>(acc, sums);
    for (int j = 0; j < T; ++j) {
      const float sx = x.scale(token0 + t + j);
      for (int r = 0; r < nr; ++r) y[(t + j) * ys + first + r * step] = sx * sums[j * R + r];
    }
  }

#if defined(TIDAL_CPU_AVX512)
  static __m512i as_bytes(char v) { return _mm512_set1_epi8(v); }
  static __m512i and_int(__m512i a, __m512i b) { return _mm512_and_si512(a, b); }
  static __m512i shift_right_4(__m512i a) { return _mm512_srli_epi16(a, 4); }
  static __m512 to_float(__m512i a) { return _mm512_cvtepi32_ps(a); }
  static __m512 fmadd_float(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
#else
  static __m256i as_bytes(char v) { return _mm256_set1_epi8(v); }
  static __m256i and_int(__m256i a, __m256i b) { return _mm256_and_si256(a, b); }
  static __m256i shift_right_4(__m256i a) { return _mm256_srli_epi16(a, 4); }
  static __m256 to_float(__m256i a) { return _mm256_cvtepi32_ps(a); }
  static __m256 fmadd_float(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
#endif
};

template <int G>
void run_tiles(const Weight& w, int64_t first_row, int64_t n_rows, const QuantizedActivations& x, int64_t first_token,
               int64_t n_tokens, float* y, int64_t y_stride, const RowSweep& sweep) {
  for_each_int_tile(Int4Rows<G>(w, first_row, x, first_token, y, y_stride), n_rows, n_tokens, sweep);
}

#endif

}  // namespace

void int4_dot_rows(const Weight& w, int64_t first_row, int64_t n_rows, const QuantizedActivations& x,
                   int64_t first_token, int64_t n_tokens, float* y, int64_t y_stride,
                   [[maybe_unused]] const RowSweep& sweep) {
#if defined(TIDAL_CPU_SCALAR)
  const int64_t g = dtype_group_size(w.type), groups = dtype_scales_per_row(w.type, w.cols);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int8_t* xc = x.codes(first_token + t);
    for (int64_t r = 0; r < n_rows; ++r) {
      const uint8_t* packed = w.row(first_row + r);
      const float* s = w.row_scales(first_row + r);
      float acc = 0.0f;
      for (int64_t q = 0; q < groups; ++q) {
        int32_t dot = 0;
        for (int64_t k = q * g; k < (q + 1) * g; ++k) {
          const int code = k % 2 == 0 ? packed[k / 2] & 0x0f : packed[k / 2] >> 4;
          dot += (code - 8) * xc[k];
        }
        acc = mul_add(s[q], static_cast<float>(dot), acc);
      }
      y[t * y_stride + r] = x.scale(first_token + t) * acc;
    }
  }
#else
  switch (w.type) {
    case DType::I4_G32: run_tiles<32>(w, first_row, n_rows, x, first_token, n_tokens, y, y_stride, sweep); break;
    case DType::I4_G64: run_tiles<64>(w, first_row, n_rows, x, first_token, n_tokens, y, y_stride, sweep); break;
    case DType::I4_G128: run_tiles<128>(w, first_row, n_rows, x, first_token, n_tokens, y, y_stride, sweep); break;
    default: throw Error(ErrorCode::kInternal, "int4_dot_rows: " + std::string(dtype_name(w.type)) + " is not int4");
  }
#endif
}

}  // namespace tidal::cpu
