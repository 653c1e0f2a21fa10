// How the integer kernels (int8_kernels.cpp, int4_kernels.cpp) cover rows
// x tokens with register tiles, and how a tile's accumulators are reduced.
// A kernel provides
//   static constexpr int tile_rows(int tokens);   // R for a group of T tokens
//   template <int R, int T> void tile(int64_t first, int64_t step, int nr, int64_t t) const;
// where tile() computes rows first, first + step, ... (the first nr of R
// are real; the rest repeat the last real one and are dropped) for tokens
// t .. t + T. Each output is computed by the same instructions whichever
// tile shape, token group or row order produced it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/int_kernels.h"
#include "cpu/lane_sums.h"
#include "cpu/panel_prefetch.h"
#include "cpu/streaming_tiles.h"

namespace tidal::cpu {

#if !defined(TIDAL_CPU_SCALAR)

// Tokens per register tile: the widest group for which 4 rows still keep
// one accumulator per (row, token) in registers.
constexpr int kIntTileTokens = 4;

template <typename Kernel>
void for_each_int_tile(const Kernel& kernel, int64_t n_rows, int64_t n_tokens, const RowSweep& sweep) {
  constexpr int kFullRows = Kernel::tile_rows(kIntTileTokens);
  const int64_t n_tiles = (n_rows + kFullRows - 1) / kFullRows * ((n_tokens + kIntTileTokens - 1) / kIntTileTokens);
  PanelPrefetch prefetch(sweep.prefetch, sweep.prefetch_bytes, n_tiles);
  auto rows = [&](auto tokens, int64_t t) {
    constexpr int T = decltype(tokens)::value;
    constexpr int R = Kernel::tile_rows(T);
    if (sweep.order == RowOrder::kStream) {
      for_each_streaming_tile<R>(n_rows, [&](int64_t first, int64_t step, int nr) {
        kernel.template tile<R, T>(first, step, nr, t);
      });
    } else {
      for (int64_t r = 0; r < n_rows; r += R) {
        prefetch.issue();
        kernel.template tile<R, T>(r, 1, static_cast<int>(std::min<int64_t>(R, n_rows - r)), t);
      }
    }
  };
  for (int64_t t = 0; t < n_tokens; t += kIntTileTokens) {
    switch (std::min<int64_t>(kIntTileTokens, n_tokens - t)) {
      case 1: rows(std::integral_constant<int, 1>{}, t); break;
      case 2: rows(std::integral_constant<int, 2>{}, t); break;
      case 3: rows(std::integral_constant<int, 3>{}, t); break;
      default: rows(std::integral_constant<int, 4>{}, t); break;
    }
  }
}

#if defined(TIDAL_CPU_AVX512)
using IntVec = __m512i;
using FloatVec = __m512;
constexpr int kIntLanes = 16;
#else
using IntVec = __m256i;
using FloatVec = __m256;
constexpr int kIntLanes = 8;
#endif

[[gnu::always_inline]] inline IntVec load_int(const void* p) {
#if defined(TIDAL_CPU_AVX512)
  return _mm512_loadu_si512(p);
#else
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
#endif
}

// The sums of an R x T tile's accumulators: out[t * R + r] = the sum of
// acc[r][t]'s lanes. Integer sums are exact, so any order would do; the
// float ones go through transpose_sum, whose tree is the same for every
// slot (cpu/lane_sums.h), so they do not depend on R and T either.
template <int R, int T>
[[gnu::always_inline]] inline void reduce_tile(const IntVec (&acc)[R][T], int32_t* out) {
  static_assert(R * T <= kIntLanes);
  IntVec v[kIntLanes];
#pragma GCC unroll 16
  for (int lane = 0; lane < kIntLanes; ++lane) {
    v[lane_slot(lane)] = lane < R * T ? acc[lane % R][lane / R] : IntVec{};
  }
#if defined(TIDAL_CPU_AVX512)
  _mm512_storeu_si512(out, transpose_sum_epi32(v));
#else
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), transpose_sum_epi32(v));
#endif
}

template <int R, int T>
[[gnu::always_inline]] inline void reduce_tile(const FloatVec (&acc)[R][T], float* out) {
  static_assert(R * T <= kIntLanes);
  FloatVec v[kIntLanes];
#pragma GCC unroll 16
  for (int lane = 0; lane < kIntLanes; ++lane) {
    v[lane_slot(lane)] = lane < R * T ? acc[lane % R][lane / R] : FloatVec{};
  }
#if defined(TIDAL_CPU_AVX512)
  _mm512_storeu_ps(out, transpose_sum_ps(v));
#else
  _mm256_storeu_ps(out, transpose_sum_ps(v));
#endif
}

#endif

}  // namespace tidal::cpu
