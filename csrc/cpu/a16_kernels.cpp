// W8A16 and W4A16: asymmetric group-wise weights (W8A16_G32, W4A16_G*; a
// code c of group g decodes to m_g + d_g * c) times int16 activations
// quantized per token (cpu/int_activations.h). For a row and a token,
//
//   y = scale_x * sum over groups g of (d_g * D_g + m_g * S_g),
//   D_g = sum_{k in g} c_k * q_x[k] (exact int32),  S_g = sum_{k in g} q_x[k],
//
// where S_g comes with the activations. The products are pmaddwd's (AVX2,
// AVX-512BW) and dpwssd's (AVX-512 VNNI) of the unsigned codes, widened to
// int16, by the int16 codes: |c * q| <= 255 * 32767, so a group's sum
// cannot overflow (128 * 255 * 32767 < 2^31).
//
// Order, fixed per (row, token) whatever tile computes it: each group's D_g
// lanes (int32, exact) are converted to float and multiplied by d_g into
// the float accumulator lanes, group after group (on AVX-512 two groups of
// 32 at once, in lanes 0-7 and 8-15 of one vector, which saves a convert
// and a multiply-add per group); then the offsets m_g times S_g, 16 groups
// (8 on AVX2) to a vector, into the same lanes; the lanes are added by the
// halving tree of cpu/lane_sums.h and the sum multiplied by scale_x. The
// activations are laid out so that the weights need no shuffle across
// lanes (cpu/int_activations.h): 32 bytes of 4-bit codes widen to 32 int16
// whose low nibbles are a chunk's even elements and high nibbles its odd
// ones; 8-bit codes are taken 16 bytes at a time.
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

template <bool kNibbles, int G>
struct A16Rows {
  // Row r of the range is codes + r * row_bytes with scales and offsets at
  // params + r * 2 * groups: worked out once here, not per tile.
  const uint8_t* codes;
  size_t row_bytes;
  const float* params;
  int64_t groups;
  const QuantizedActivations& x;
  int64_t token0;
  float* y;
  int64_t ys;

  A16Rows(const Weight& w, int64_t first_row, const QuantizedActivations& x, int64_t first_token, float* y, int64_t ys)
      : codes(w.row(first_row)), row_bytes(w.row_bytes()), params(w.row_scales(first_row)),
        groups(dtype_scales_per_row(w.type, w.cols) / 2), x(x), token0(first_token), y(y), ys(ys) {}

  static constexpr int64_t kChunkBytes = kNibbles ? kA16Chunk / 2 : kA16Chunk;

#if defined(TIDAL_CPU_AVX512)
  static constexpr int tile_rows(int tokens) { return 4; }

  // A piece is what one widen covers: a whole chunk; a float step is one
  // group of 128, or the two groups of 32 of a chunk.
  static constexpr int64_t kPieceElems = kA16Chunk;
  static constexpr int64_t kStep = G > kA16Chunk ? G : kA16Chunk;
  static constexpr int64_t piece_offset(int64_t piece) { return piece * kA16Chunk; }
  [[gnu::always_inline]] static __m512 scale_add(__m512i dot, __m512 d, __m512 acc) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), d, acc);
  }

  // Chunk c of a row as two vectors of 32 int16, matching the activations'
  // two halves of the chunk (cpu/int_activations.h).
  struct Pair {
    __m512i a, b;
  };
  [[gnu::always_inline]] static Pair widen(const uint8_t* row, int64_t c) {
    const uint8_t* p = row + c * kChunkBytes;
    if constexpr (kNibbles) {
      const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      return {_mm512_and_si512(b, _mm512_set1_epi16(0x0f)), _mm512_srli_epi16(b, 4)};
    } else {
      auto quarters = [&](int first, int second) {
        const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * first));
        const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * second));
        return _mm512_cvtepu8_epi16(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
      };
      return {quarters(0, 2), quarters(1, 3)};
    }
  }

  [[gnu::always_inline]] static __m512i dot_add(__m512i acc, const Pair& w, const int16_t* xs) {
#if defined(__AVX512VNNI__)
    acc = _mm512_dpwssd_epi32(acc, w.a, _mm512_loadu_si512(xs));
    return _mm512_dpwssd_epi32(acc, w.b, _mm512_loadu_si512(xs + 32));
#else
    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(w.a, _mm512_loadu_si512(xs)));
    return _mm512_add_epi32(acc, _mm512_madd_epi16(w.b, _mm512_loadu_si512(xs + 32)));
#endif
  }

  // The scale of each lane for step s: lanes 0-7 hold the first group of
  // a two-group chunk and lanes 8-15 the second.
  [[gnu::always_inline]] static __m512 step_scales(const float* d, int64_t s) {
    if constexpr (G > kA16Chunk) {
      return _mm512_set1_ps(d[s]);
    } else {
      const __m512i group_of_lane = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
      const __m128 pair = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(d + 2 * s)));
      return _mm512_permutexvar_ps(group_of_lane, _mm512_castps128_ps512(pair));
    }
  }

  // The offsets term: 16 groups at a time, the last masked to the row's groups.
  [[gnu::always_inline]] __m512 offsets(const float* m, const float* sums, __m512 acc) const {
    for (int64_t g = 0; g < groups; g += 16) {
      const __mmask16 keep = groups - g >= 16 ? __mmask16(0xffff) : __mmask16((1u << (groups - g)) - 1);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(keep, m + g), _mm512_loadu_ps(sums + g), acc);
    }
    return acc;
  }

#else
  // 16 ymm registers: the float accumulators, a group's int sums and the weights.
  static constexpr int tile_rows(int tokens) { return tokens == 1 ? 4 : 2; }

  // A piece is half a chunk (32 elements, one group of 32 or a quarter of
  // one of 128), as two vectors of 16 int16 that meet the activations at
  // c * 64 + 16 h and c * 64 + 32 + 16 h (piece 2c + h); a float step is a group.
  struct Pair {
    __m256i a, b;
  };
  [[gnu::always_inline]] static Pair widen(const uint8_t* row, int64_t piece) {
    const auto* p = reinterpret_cast<const __m128i*>(row + piece * kChunkBytes / 2);
    if constexpr (kNibbles) {
      const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(p));
      return {_mm256_and_si256(b, _mm256_set1_epi16(0x0f)), _mm256_srli_epi16(b, 4)};
    } else {
      return {_mm256_cvtepu8_epi16(_mm_loadu_si128(p)), _mm256_cvtepu8_epi16(_mm_loadu_si128(p + 1))};
    }
  }
  static constexpr int64_t kPieceElems = kA16Chunk / 2;
  static constexpr int64_t kStep = G;
  static constexpr int64_t piece_offset(int64_t piece) { return piece / 2 * kA16Chunk + 16 * (piece % 2); }
  [[gnu::always_inline]] static __m256 step_scales(const float* d, int64_t s) { return _mm256_set1_ps(d[s]); }
  [[gnu::always_inline]] static __m256 scale_add(__m256i dot, __m256 d, __m256 acc) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), d, acc);
  }

  [[gnu::always_inline]] static __m256i dot_add(__m256i acc, const Pair& w, const int16_t* xs) {
    const __m256i lo = _mm256_madd_epi16(w.a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs)));
    const __m256i hi = _mm256_madd_epi16(w.b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 32)));
    return _mm256_add_epi32(acc, _mm256_add_epi32(lo, hi));
  }

  [[gnu::always_inline]] __m256 offsets(const float* m, const float* sums, __m256 acc) const {
    for (int64_t g = 0; g < groups; g += 8) {
      const __m256 mv = groups - g >= 8 ? _mm256_loadu_ps(m + g) : _mm256_maskload_ps(m + g, tail_mask8(groups - g));
      acc = _mm256_fmadd_ps(mv, _mm256_loadu_ps(sums + g), acc);
    }
    return acc;
  }
#endif

  // The float steps of a tile: each row's exact int sums over a step's
  // pieces, then one multiply-add by the step's lane scales.
  template <int R, int T>
  [[gnu::always_inline]] void steps(const uint8_t* const (&rows)[R], const float* const (&row_params)[R],
                                    const int16_t* const (&xs)[T], FloatVec (&acc)[R][T]) const {
    constexpr int64_t kPieces = kStep / kPieceElems;
    const int64_t n_steps = groups * G / kStep;
    for (int64_t s = 0; s < n_steps; ++s) {
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        IntVec dot[T];
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) dot[j] = IntVec{};
#pragma GCC unroll 4
        for (int64_t p = 0; p < kPieces; ++p) {
          const Pair w = widen(rows[r], s * kPieces + p);
#pragma GCC unroll 4
          for (int j = 0; j < T; ++j) dot[j] = dot_add(dot[j], w, xs[j] + piece_offset(s * kPieces + p));
        }
        const FloatVec d = step_scales(row_params[r], s);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) acc[r][j] = scale_add(dot[j], d, acc[r][j]);
      }
    }
  }

  template <int R, int T>
  void tile(int64_t first, int64_t step, int nr, int64_t t) const {
    const uint8_t* rows[R];
    const float* row_params[R];
    for (int r = 0; r < R; ++r) {
      const int64_t row = first + std::min(r, nr - 1) * step;
      rows[r] = codes + size_t(row) * row_bytes;
      row_params[r] = params + row * 2 * groups;
    }
    const int16_t* xs[T];
    for (int j = 0; j < T; ++j) xs[j] = x.codes16(token0 + t + j);
    FloatVec acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) acc[r][j] = FloatVec{};
    }
    steps<R, T>(rows, row_params, xs, acc);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) acc[r][j] = offsets(row_params[r] + groups, x.group_sums(token0 + t + j), acc[r][j]);
    }
    alignas(64) float sums[kIntLanes];
    reduce_tile<R, T>(acc, sums);
    for (int j = 0; j < T; ++j) {
      const float sx = x.scale(token0 + t + j);
      for (int r = 0; r < nr; ++r) y[(t + j) * ys + first + r * step] = sums[j * R + r] * sx;
    }
  }
};

template <bool kNibbles, int G>
void a16_tiles(const Weight& w, int64_t first_row, int64_t n_rows, const QuantizedActivations& x, int64_t first_token,
               int64_t n_tokens, float* y, int64_t y_stride, const RowSweep& sweep) {
  for_each_int_tile(A16Rows<kNibbles, G>(w, first_row, x, first_token, y, y_stride), n_rows, n_tokens, sweep);
}

#endif

}  // namespace

void a16_dot_rows(const Weight& w, int64_t first_row, int64_t n_rows, const QuantizedActivations& x,
                  int64_t first_token, int64_t n_tokens, float* y, int64_t y_stride,
                  [[maybe_unused]] const RowSweep& sweep) {
#if defined(TIDAL_CPU_SCALAR)
  const int64_t g = dtype_group_size(w.type), groups = dtype_scales_per_row(w.type, w.cols) / 2;
  const bool nibbles = dtype_packs_nibbles(w.type);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int16_t* xc = x.codes16(first_token + t);
    const float* sums = x.group_sums(first_token + t);
    for (int64_t r = 0; r < n_rows; ++r) {
      const uint8_t* codes = w.row(first_row + r);
      const float* p = w.row_scales(first_row + r);
      float acc = 0.0f;
      for (int64_t k = 0; k < groups; ++k) {
        int32_t dot = 0;
        for (int64_t i = k * g; i < (k + 1) * g; ++i) {
          const int c = nibbles ? (i % 2 == 0 ? codes[i / 2] & 0x0f : codes[i / 2] >> 4) : codes[i];
          dot += c * xc[i];
        }
        acc = mul_add(p[k], static_cast<float>(dot), acc);
      }
      for (int64_t k = 0; k < groups; ++k) acc = mul_add(p[groups + k], sums[k], acc);
      y[t * y_stride + r] = acc * x.scale(first_token + t);
    }
  }
#else
  switch (w.type) {
    case DType::W8A16_G32: a16_tiles<false, 32>(w, first_row, n_rows, x, first_token, n_tokens, y, y_stride, sweep); break;
    case DType::W4A16_G32: a16_tiles<true, 32>(w, first_row, n_rows, x, first_token, n_tokens, y, y_stride, sweep); break;
    default: a16_tiles<true, 128>(w, first_row, n_rows, x, first_token, n_tokens, y, y_stride, sweep); break;
  }
#endif
}

}  // namespace tidal::cpu
