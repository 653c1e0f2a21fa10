// W8A8 with a scale per group of 32: I8_G32 weights (code = q + 128) times
// int8 activations quantized per block of 32 (cpu/int_activations.h), so
// every group's exact integer dot product has one weight scale and one
// activation scale.
//
// The integer products are formed as the I8 kernels form them: dpbusd of
// the unsigned codes by the signed activations on AVX-512, each 32-bit lane
// starting from -128 times its 4 activations' sum (stored with them), which
// removes the offset exactly; on AVX2 the codes are made signed again and
// multiplied by the sign trick (int8_kernels.cpp has why).
//
// A lane holds 4 consecutive elements of one group (on either ISA).
// After each chunk it is converted to float and multiplied by its group's
// scale product s_w * s_x into a float accumulator lane: the order of
// int4_kernels.cpp, with the product of two scales where int4 has one
// (cpu/int_kernels.h has the resulting order).
//
// Same tuning as dot_kernels.cpp, for the same reason: Zen tuning folds a
// load into every multiply-add that uses an operand.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX2__)
#pragma GCC target("tune=generic")
#endif

#include <algorithm>

#include "cpu/int_kernels.h"
#include "cpu/int_tiles.h"

namespace tidal::cpu {

namespace {

constexpr int64_t kGroup = kActivationBlock;

#if !defined(TIDAL_CPU_SCALAR)

struct Int8GroupRows {
  // Row r of the range is codes + r * row_bytes with scales
  // scales + r * groups: the sizes are worked out once here, not per tile
  // (they divide by the padding unit, at run time).
  const uint8_t* codes;
  size_t row_bytes;
  const float* scales;
  int64_t groups;
  const QuantizedActivations& x;
  int64_t token0;
  float* y;
  int64_t ys;

  Int8GroupRows(const Weight& w, int64_t first_row, const QuantizedActivations& x, int64_t first_token, float* y,
                int64_t ys)
      : codes(w.row(first_row)), row_bytes(w.row_bytes()), scales(w.row_scales(first_row)),
        groups(dtype_scales_per_row(w.type, w.cols)), x(x), token0(first_token), y(y), ys(ys) {}

  // Each row and token needs pointers in general registers; only the float
  // accumulation carries from chunk to chunk, so a few rows cover its latency.
#if defined(TIDAL_CPU_AVX512)
  static constexpr int tile_rows(int tokens) { return 4; }
  static constexpr int64_t kChunk = 64;  // two groups: lanes 0-7 the first, 8-15 the second

  // The scale of each lane of chunk c, from a [groups] array of scales.
  static __m512 lane_scales(const float* s, int64_t c) {
    const __m512i group_of_lane = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m128 pair = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(s + 2 * c)));
    return _mm512_permutexvar_ps(group_of_lane, _mm512_castps128_ps512(pair));
  }
#else
  // 16 ymm registers: the float accumulators, the tokens and the sign-trick temporaries.
  static constexpr int tile_rows(int tokens) { return tokens == 1 ? 4 : 2; }
  static constexpr int64_t kChunk = 32;  // one group

  static __m256 lane_scales(const float* s, int64_t c) { return _mm256_set1_ps(s[c]); }
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
    const float* x_scales[T];
#if defined(TIDAL_CPU_AVX512)
    const int32_t* corrections[T];
#endif
    for (int j = 0; j < T; ++j) {
      xs[j] = x.codes(token0 + t + j);
      x_scales[j] = x.block_scales(token0 + t + j);
#if defined(TIDAL_CPU_AVX512)
      corrections[j] = x.neg_corrections(token0 + t + j);
#endif
    }
    FloatVec acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) acc[r][j] = FloatVec{};
    }
#if defined(TIDAL_CPU_AVX2)
    const __m256i sign_bit = _mm256_set1_epi8(-128), ones = _mm256_set1_epi16(1);
#endif
    const int64_t chunks = int64_t(row_bytes) / kChunk;
    for (int64_t c = 0; c < chunks; ++c) {
      IntVec xv[T];
      FloatVec sx[T];
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) {
        xv[j] = load_int(xs[j] + c * kChunk);
        sx[j] = lane_scales(x_scales[j], c);
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const FloatVec sw = lane_scales(row_scales[r], c);
#if defined(TIDAL_CPU_AVX512)
        const __m512i w = _mm512_loadu_si512(rows[r] + c * kChunk);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) {
          const __m512i dot = _mm512_dpbusd_epi32(load_int(corrections[j] + c * kIntLanes), w, xv[j]);
          acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(sw, sx[j]), acc[r][j]);
        }
#else
        const __m256i q = _mm256_xor_si256(load_int(rows[r] + c * kChunk), sign_bit);
        const __m256i magnitude = _mm256_abs_epi8(q);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) {
          const __m256i pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(xv[j], q));
          const __m256i dot = _mm256_madd_epi16(pairs, ones);
          acc[r][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(sw, sx[j]), acc[r][j]);
        }
#endif
      }
    }
    alignas(64) float sums[kIntLanes];
    reduce_tile<R, T>(acc, sums);
    for (int j = 0; j < T; ++j) {
      for (int r = 0; r < nr; ++r) y[(t + j) * ys + first + r * step] = sums[j * R + r];
    }
  }
};

#endif

}  // namespace

void int8_g32_dot_rows(const Weight& w, int64_t first_row, int64_t n_rows, const QuantizedActivations& x,
                       int64_t first_token, int64_t n_tokens, float* y, int64_t y_stride,
                       [[maybe_unused]] const RowSweep& sweep) {
#if defined(TIDAL_CPU_SCALAR)
  const int64_t groups = dtype_scales_per_row(w.type, w.cols);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int8_t* xc = x.codes(first_token + t);
    const float* sx = x.block_scales(first_token + t);
    for (int64_t r = 0; r < n_rows; ++r) {
      const uint8_t* codes = w.row(first_row + r);
      const float* sw = w.row_scales(first_row + r);
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        int32_t dot = 0;
        for (int64_t k = g * kGroup; k < (g + 1) * kGroup; ++k) dot += (int32_t(codes[k]) - 128) * xc[k];
        acc = mul_add(sw[g] * sx[g], static_cast<float>(dot), acc);
      }
      y[t * y_stride + r] = acc;
    }
  }
#else
  for_each_int_tile(Int8GroupRows(w, first_row, x, first_token, y, y_stride), n_rows, n_tokens, sweep);
#endif
}

}  // namespace tidal::cpu
