// W8A8: I8 weights (code = q + 128) times int8 activations.
//
// AVX-512 (VNNI): dpbusd multiplies the unsigned weight codes by the signed
// activations, four byte products per 32-bit lane, so sum(code * x) comes
// out directly and the offset is removed once per (row, token) as
// 128 * sum(x), the token's code sum computed at quantization.
// AVX2: maddubs would saturate on code * x (255 * 127 * 2 > 32767), so the
// codes are turned back into signed weights (code ^ 0x80 = q) and multiplied
// as |q| * (x * sign(q)): at most 127 * 127 * 2, which fits in int16.
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

#if !defined(TIDAL_CPU_SCALAR)

struct Int8Rows {
  // Row r of the range is codes + r * row_bytes with scale scales[r]: the
  // sizes are worked out once here, not per tile (they divide by the
  // padding unit, at run time).
  const uint8_t* codes;
  size_t row_bytes;
  const float* scales;
  const QuantizedActivations& x;
  int64_t token0;
  float* y;
  int64_t ys;

  Int8Rows(const Weight& w, int64_t first_row, const QuantizedActivations& x, int64_t first_token, float* y, int64_t ys)
      : codes(w.row(first_row)), row_bytes(w.row_bytes()), scales(w.row_scales(first_row)), x(x), token0(first_token),
        y(y), ys(ys) {}

#if defined(TIDAL_CPU_AVX512)
  // Each row's pointer must stay in a general register (16 of them), and 8
  // independent accumulators already cover the multiply-add latency.
  static constexpr int tile_rows(int tokens) { return tokens <= 2 ? 8 : 4; }
  static constexpr int kStepBytes = 64;
  static constexpr int32_t kCodeOffset = 128;
#else
  // 16 ymm registers: the accumulators, the tokens, and the sign-trick temporaries.
  static constexpr int tile_rows(int tokens) { return tokens == 1 ? 8 : tokens == 2 ? 4 : 2; }
  static constexpr int kStepBytes = 32;
  static constexpr int32_t kCodeOffset = 0;  // the weights were made signed
#endif

  template <int R, int T>
  void tile(int64_t first, int64_t step, int nr, int64_t t) const {
    const int64_t bytes = int64_t(row_bytes);
    const uint8_t* rows[R];
    for (int r = 0; r < R; ++r) rows[r] = codes + size_t(first + std::min(r, nr - 1) * step) * row_bytes;
    const int8_t* xs[T];
    for (int j = 0; j < T; ++j) xs[j] = x.codes(token0 + t + j);
    IntVec acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) acc[r][j] = IntVec{};
    }
#if defined(TIDAL_CPU_AVX2)
    const __m256i sign_bit = _mm256_set1_epi8(-128), ones = _mm256_set1_epi16(1);
#endif
    for (int64_t i = 0; i < bytes; i += kStepBytes) {
      IntVec xv[T];
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) xv[j] = load_int(xs[j] + i);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
#if defined(TIDAL_CPU_AVX512)
        const __m512i codes = _mm512_loadu_si512(rows[r] + i);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], codes, xv[j]);
#else
        const __m256i q = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + i)), sign_bit);
        const __m256i magnitude = _mm256_abs_epi8(q);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) {
          const __m256i pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(xv[j], q));
          acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(pairs, ones));
        }
#endif
      }
    }
    alignas(64) int32_t dots[kIntLanes];
    reduce_tile<R, T>(acc, dots);
    for (int j = 0; j < T; ++j) {
      const float sx = x.scale(token0 + t + j);
      const int32_t offset = kCodeOffset * x.sum(token0 + t + j);
      for (int r = 0; r < nr; ++r) {
        const int64_t row = first + r * step;
        y[(t + j) * ys + row] = (sx * scales[row]) * static_cast<float>(dots[j * R + r] - offset);
      }
    }
  }
};

#endif

}  // namespace

void int8_dot_rows(const Weight& w, int64_t first_row, int64_t n_rows, const QuantizedActivations& x,
                   int64_t first_token, int64_t n_tokens, float* y, int64_t y_stride,
                   [[maybe_unused]] const RowSweep& sweep) {
#if defined(TIDAL_CPU_SCALAR)
  const int64_t bytes = int64_t(w.row_bytes());
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int8_t* xc = x.codes(first_token + t);
    for (int64_t r = 0; r < n_rows; ++r) {
      const uint8_t* codes = w.row(first_row + r);
      int32_t dot = 0;
      for (int64_t k = 0; k < bytes; ++k) dot += (int32_t(codes[k]) - 128) * xc[k];
      y[t * y_stride + r] = (x.scale(first_token + t) * w.row_scales(first_row + r)[0]) * static_cast<float>(dot);
    }
  }
#else
  for_each_int_tile(Int8Rows(w, first_row, x, first_token, y, y_stride), n_rows, n_tokens, sweep);
#endif
}

}  // namespace tidal::cpu
