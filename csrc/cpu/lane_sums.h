// Horizontal sums of a whole register tile of accumulators at once, shared
// by the F32 dot kernels and the integer kernels. Summing each accumulator
// on its own costs a handful of shuffles apiece; transposing them as they
// are added costs about one operation per accumulator.
//
// The network adds lane j to lane j + W/2, then j + W/4, ... down to j + 1
// (W = the vector width), so every result is that halving tree over one
// input vector: the same additions, in the same order, whichever slot of
// the tile the vector occupied. Float sums therefore do not depend on the
// tile shape, which batch invariance relies on.
#pragma once

#include "cpu/simd.h"

namespace tidal::cpu {

#if defined(TIDAL_CPU_AVX512)

// Lane L of transpose_sum's result is the sum of input v[lane_slot(L)].
constexpr int lane_slot(int lane) { return 4 * (lane % 4) + lane / 4; }

// 16 vectors in, one out; `add` is the lane-wise addition (float or int32
// bits travel through the float shuffles unchanged).
template <typename Add>
[[gnu::always_inline]] inline __m512 transpose_sum(const __m512* v, Add add) {
  __m512 s[8], u[4];
  for (int i = 0; i < 8; ++i) {  // lane j += lane j+8
    const __m512 a = v[2 * i], b = v[2 * i + 1];
    s[i] = add(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  for (int i = 0; i < 4; ++i) {  // lane j += lane j+4
    const __m512 a = s[2 * i], b = s[2 * i + 1];
    u[i] = add(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  const __m512 w0 = add(_mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(1, 0, 1, 0)),  // lane j += lane j+2
                        _mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 w1 = add(_mm512_shuffle_ps(u[2], u[3], _MM_SHUFFLE(1, 0, 1, 0)),
                        _mm512_shuffle_ps(u[2], u[3], _MM_SHUFFLE(3, 2, 3, 2)));
  return add(_mm512_shuffle_ps(w0, w1, _MM_SHUFFLE(2, 0, 2, 0)),  // lane j += lane j+1
             _mm512_shuffle_ps(w0, w1, _MM_SHUFFLE(3, 1, 3, 1)));
}

[[gnu::always_inline]] inline __m512 transpose_sum_ps(const __m512* v) {
  return transpose_sum(v, [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); });
}

[[gnu::always_inline]] inline __m512i transpose_sum_epi32(const __m512i* v) {
  __m512 f[16];
  for (int i = 0; i < 16; ++i) f[i] = _mm512_castsi512_ps(v[i]);
  return _mm512_castps_si512(transpose_sum(f, [](__m512 a, __m512 b) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }));
}

#elif defined(TIDAL_CPU_AVX2)

constexpr int lane_slot(int lane) { return 2 * (lane % 4) + lane / 4; }

// 8 vectors in, one out.
template <typename Add>
[[gnu::always_inline]] inline __m256 transpose_sum(const __m256* v, Add add) {
  __m256 s[4];
  for (int i = 0; i < 4; ++i) {  // lane j += lane j+4
    const __m256 a = v[2 * i], b = v[2 * i + 1];
    s[i] = add(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
  }
  const __m256 u0 = add(_mm256_shuffle_ps(s[0], s[1], _MM_SHUFFLE(1, 0, 1, 0)),  // lane j += lane j+2
                        _mm256_shuffle_ps(s[0], s[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 u1 = add(_mm256_shuffle_ps(s[2], s[3], _MM_SHUFFLE(1, 0, 1, 0)),
                        _mm256_shuffle_ps(s[2], s[3], _MM_SHUFFLE(3, 2, 3, 2)));
  return add(_mm256_shuffle_ps(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),  // lane j += lane j+1
             _mm256_shuffle_ps(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
}

[[gnu::always_inline]] inline __m256 transpose_sum_ps(const __m256* v) {
  return transpose_sum(v, [](__m256 a, __m256 b) { return _mm256_add_ps(a, b); });
}

[[gnu::always_inline]] inline __m256i transpose_sum_epi32(const __m256i* v) {
  __m256 f[8];
  for (int i = 0; i < 8; ++i) f[i] = _mm256_castsi256_ps(v[i]);
  return _mm256_castps_si256(transpose_sum(f, [](__m256 a, __m256 b) {
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b)));
  }));
}

#endif

}  // namespace tidal::cpu
