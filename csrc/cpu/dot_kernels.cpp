// -march=native tunes for Zen here, and GCC's Zen cost model folds a load
// into every FMA that uses it: each operand of a tile is then re-read R or
// T times and the kernel is bound by loads at about half its FMA rate.
// Generic tuning loads each operand into a register once. It comes before
// the includes because GCC does not inline across differently tuned
// functions (std::min included; the intrinsics are always_inline).
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX2__)
#pragma GCC target("tune=generic")
#endif

#include "cpu/dot_kernels.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/dequantize.h"
#include "core/error.h"
#include "cpu/dequant_simd.h"
#include "cpu/lane_sums.h"
#include "cpu/panel_prefetch.h"
#include "cpu/simd.h"
#include "cpu/streaming_tiles.h"

namespace tidal::cpu {

namespace {

// Token groups are at most this wide where rows stream from memory (a few
// tokens, F16 keys); each group size has its own row count so a tile keeps
// about kLanes accumulators in registers. Over cached panels the groups
// are Isa::kPanelTokens wide.
constexpr int kStreamTokens = 4;

#if defined(TIDAL_CPU_AVX512)

struct Isa {
  using V = __m512;
  static constexpr int kLanes = 16;
  // Rows per tile for a group of t tokens: 16x1 streams rows for GEMV; 4x4
  // needs 8 loads per 16 FMAs, within one load per FMA. Every count divides
  // 16, so a 16-slot KV block scored against any number of query heads has
  // no ragged tile.
  static constexpr int tile_rows(int t) { return t == 1 ? 16 : t == 2 ? 8 : 4; }
  // Over a panel of rows already in L2, groups of up to 6 tokens: a 4x6
  // tile holds 24 of the 32 registers as accumulators and loads each
  // weight vector from L2 once per 6 tokens instead of 4 (measured faster
  // than 4x4, and than 3x8, whose 8 token rows crowd the weights out of L1).
  static constexpr int kPanelTokens = 6;

  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }

  // Loads the first n (< kLanes) floats at p, zeros elsewhere; reads nothing past p + n.
  struct Tail {
    __mmask16 mask;
    V load(const float* p) const { return _mm512_maskz_loadu_ps(mask, p); }
  };
  static Tail tail(int64_t n) { return {static_cast<__mmask16>((1u << n) - 1)}; }

  // The halving tree of dot_kernels.h.
  static float hsum(V v) {
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
  }

  // hsum of every vector of a tile at once (cpu/lane_sums.h): lane L of
  // the result is hsum(v[slot(L)]).
  static constexpr int slot(int lane) { return lane_slot(lane); }
  static V hsum_lanes(const V* v) { return transpose_sum_ps(v); }
};

#elif defined(TIDAL_CPU_AVX2)

struct Isa {
  using V = __m256;
  static constexpr int kLanes = 8;
  // 16 ymm registers: at most 8 accumulators plus the row and token operands.
  static constexpr int tile_rows(int t) { return t == 1 ? 8 : t == 2 ? 4 : 2; }
  static constexpr int kPanelTokens = 4;

  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }

  struct Tail {
    __m256i mask;
    V load(const float* p) const { return _mm256_maskload_ps(p, mask); }
  };
  static Tail tail(int64_t n) { return {tail_mask8(n)}; }

  static float hsum(V v) {
    const __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 c = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
  }

  static constexpr int slot(int lane) { return lane_slot(lane); }
  static V hsum_lanes(const V* v) { return transpose_sum_ps(v); }
};

#endif

#if defined(TIDAL_CPU_AVX512) || defined(TIDAL_CPU_AVX2)

using V = Isa::V;
constexpr int kLanes = Isa::kLanes;

// Reduces the R x T accumulators of a tile, kLanes at a time, and writes
// the first nr rows of each token's outputs, row r at y[t*ys + r*yr].
// Inlined so the accumulators never leave registers.
template <int R, int T>
[[gnu::always_inline]] inline void store_tile(const V (&acc)[R][T], int nr, float* y, int64_t ys, int64_t yr) {
  constexpr int kChunks = (R * T + kLanes - 1) / kLanes;
  alignas(64) float out[kChunks * kLanes];
#pragma GCC unroll 2
  for (int c = 0; c < kChunks; ++c) {
    V v[kLanes];
#pragma GCC unroll 16
    for (int lane = 0; lane < kLanes; ++lane) {
      const int a = c * kLanes + lane;
      v[Isa::slot(lane)] = a < R * T ? acc[a % R][a / R] : Isa::zero();
    }
    Isa::store(out + c * kLanes, Isa::hsum_lanes(v));
  }
  for (int t = 0; t < T; ++t) {
    if (nr == R && yr == 1) {
      std::memcpy(y + t * ys, out + t * R, sizeof(float) * R);
    } else {
      for (int r = 0; r < nr; ++r) y[t * ys + r * yr] = out[t * R + r];
    }
  }
}

// R rows x T tokens of dot products, one accumulator each; row r of the
// tile is w + r*ws and its outputs go to y + r*yr. Rows at or past nr
// repeat the last valid row so the inner loop has no branches; their
// results are dropped. Each full step also prefetches the cache line at
// pf + 64 * step into L2 (PanelPrefetch::take).
template <int R, int T>
void tile(const float* w, int64_t ws, int nr, const float* x, int64_t xs, int64_t k, float* y, int64_t ys,
          int64_t yr, const char* pf) {
  static_assert(R * T <= 2 * kLanes);
  const float* wp[R];
  for (int r = 0; r < R; ++r) wp[r] = w + std::min(r, nr - 1) * ws;
  V acc[R][T];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = Isa::zero();
  }
  int64_t i = 0;
  auto step = [&](auto load) {
    V wv[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) wv[r] = load(wp[r] + i);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const V xv = load(x + t * xs + i);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r][t] = Isa::fmadd(wv[r], xv, acc[r][t]);
    }
  };
  for (; i + kLanes <= k; i += kLanes) {
    __builtin_prefetch(pf + i / kLanes * PanelPrefetch::kLine, 0, 2);
    step([](const float* p) { return Isa::load(p); });
  }
  if (i < k) {
    const Isa::Tail tail = Isa::tail(k - i);
    step([&](const float* p) { return tail.load(p); });
  }
  store_tile<R, T>(acc, nr, y, ys, yr);
}

// The same tile over rows r0, r0 + step, ... of w stored in decoder D's
// format: each step decodes D::kStep weights of a row in registers and
// feeds them to the FMAs in the order the F32 tile would, so the result is
// that of dequantizing the rows first.
template <int R, int T, typename D>
void tile_decoded(const Weight& w, int64_t r0, int64_t step, int nr, const float* x, int64_t xs, float* y, int64_t ys) {
  static_assert(R * T <= kLanes);
  constexpr int S = D::kStep / kLanes;  // vectors per step
  const int64_t k = w.cols;
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = w.row(r0 + std::min(r, nr - 1) * step);
  V acc[R][T];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = Isa::zero();
  }
  int64_t i = 0;
  for (; i + D::kStep <= k; i += D::kStep) {
    V xv[T][S];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      for (int s = 0; s < S; ++s) xv[t][s] = Isa::load(x + t * xs + i + s * kLanes);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      V wv[S];
      D::decode(rows[r], i, wv);
      for (int s = 0; s < S; ++s) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) acc[r][t] = Isa::fmadd(wv[s], xv[t][s], acc[r][t]);
      }
    }
  }
  if constexpr (S == 1) {  // only the plain formats have rows of any length
    if (i < k) {
      const Isa::Tail tail = Isa::tail(k - i);
      for (int r = 0; r < R; ++r) {
        V wv;
        D::decode_tail(rows[r], i, k - i, &wv);
        for (int t = 0; t < T; ++t) acc[r][t] = Isa::fmadd(wv, tail.load(x + t * xs + i), acc[r][t]);
      }
    }
  }
  store_tile<R, T>(acc, nr, y, ys, step);
}

template <int T>
void tile_rows(const float* w, int64_t ws, int64_t n_rows, const float* x, int64_t xs, int64_t k, float* y,
               int64_t ys, PanelPrefetch& prefetch) {
  constexpr int R = Isa::tile_rows(T);
  for (int64_t r = 0; r < n_rows; r += R) {
    tile<R, T>(w + r * ws, ws, static_cast<int>(std::min<int64_t>(R, n_rows - r)), x, xs, k, y + r, ys, 1,
               prefetch.take(k / kLanes, x));
  }
}

template <int T>
void stream_rows(const float* w, int64_t ws, int64_t n_rows, const float* x, int64_t xs, int64_t k, float* y,
                 int64_t ys) {
  constexpr int R = Isa::tile_rows(T);
  for_each_streaming_tile<R>(n_rows, [&](int64_t first, int64_t step, int nr) {
    tile<R, T>(w + first * ws, step * ws, nr, x, xs, k, y + first, ys, step, reinterpret_cast<const char*>(x));
  });
}

template <typename D, int T>
void stream_rows_decoded(const Weight& w, int64_t r0, int64_t n_rows, const float* x, int64_t xs, float* y,
                         int64_t ys) {
  constexpr int R = Isa::tile_rows(T);
  for_each_streaming_tile<R>(n_rows, [&](int64_t first, int64_t step, int nr) {
    tile_decoded<R, T, D>(w, r0 + first, step, nr, x, xs, y + first, ys);
  });
}

// Token groups of up to MaxT tokens, each through rows(group size).
template <int MaxT, typename Rows>
void for_each_token_group(int64_t n_tokens, const float* x, int64_t xs, float* y, int64_t ys, Rows&& rows) {
  for (int64_t t = 0; t < n_tokens; t += MaxT) {
    const float* xt = x + t * xs;
    float* yt = y + t * ys;
    const int64_t group = std::min<int64_t>(MaxT, n_tokens - t);
    // rows with the group size as a compile-time constant
    [&]<int... G>(std::integer_sequence<int, G...>) {
      ((group == G + 1 ? rows(std::integral_constant<int, G + 1>{}, xt, yt) : void()), ...);
    }(std::make_integer_sequence<int, MaxT>{});
  }
}

template <typename D>
void dot_block_decoded(const Weight& w, int64_t r0, int64_t n_rows, const float* x, int64_t xs, int64_t n_tokens,
                       float* y, int64_t ys) {
  for_each_token_group<kStreamTokens>(n_tokens, x, xs, y, ys, [&](auto t, const float* xt, float* yt) {
    stream_rows_decoded<D, decltype(t)::value>(w, r0, n_rows, xt, xs, yt, ys);
  });
}

}  // namespace

void dot_block(const float* w, int64_t w_stride, int64_t n_rows, const float* x, int64_t x_stride, int64_t n_tokens,
               int64_t k, float* y, int64_t y_stride, const void* prefetch, int64_t prefetch_bytes) {
  PanelPrefetch pending(prefetch, prefetch_bytes, 0);  // handed out with take(): no bursts
  for_each_token_group<Isa::kPanelTokens>(n_tokens, x, x_stride, y, y_stride, [&](auto t, const float* xt, float* yt) {
    tile_rows<decltype(t)::value>(w, w_stride, n_rows, xt, x_stride, k, yt, y_stride, pending);
  });
}

void dot_block_weights(const Weight& w, int64_t first_row, int64_t n_rows, const float* x, int64_t x_stride,
                       int64_t n_tokens, float* y, int64_t y_stride) {
  switch (w.type) {
    case DType::F32:
      for_each_token_group<kStreamTokens>(n_tokens, x, x_stride, y, y_stride, [&](auto t, const float* xt, float* yt) {
        stream_rows<decltype(t)::value>(reinterpret_cast<const float*>(w.row(first_row)), w.cols, n_rows, xt,
                                        x_stride, w.cols, yt, y_stride);
      });
      break;
    case DType::F16: dot_block_decoded<DecodeF16>(w, first_row, n_rows, x, x_stride, n_tokens, y, y_stride); break;
    case DType::BF16: dot_block_decoded<DecodeBF16>(w, first_row, n_rows, x, x_stride, n_tokens, y, y_stride); break;
    case DType::Q8_0: dot_block_decoded<DecodeQ8_0>(w, first_row, n_rows, x, x_stride, n_tokens, y, y_stride); break;
    case DType::Q4_0: dot_block_decoded<DecodeQ4_0>(w, first_row, n_rows, x, x_stride, n_tokens, y, y_stride); break;
    case DType::Q4_1: dot_block_decoded<DecodeQ4_1>(w, first_row, n_rows, x, x_stride, n_tokens, y, y_stride); break;
    case DType::I8:
    case DType::I8_G32:
    case DType::I4_G32:
    case DType::I4_G64:
    case DType::I4_G128:
    case DType::W8A16_G32:
    case DType::W4A16_G32:
    case DType::W4A16_G128:
      throw Error(ErrorCode::kInternal, "dot_block_weights: integer weights multiply int8 activations (int_kernels.h)");
  }
}

float dot(const float* a, const float* b, int64_t n) {
  V acc = Isa::zero();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc = Isa::fmadd(Isa::load(a + i), Isa::load(b + i), acc);
  if (i < n) {
    const Isa::Tail tail = Isa::tail(n - i);
    acc = Isa::fmadd(tail.load(a + i), tail.load(b + i), acc);
  }
  return Isa::hsum(acc);
}

float sum(const float* a, int64_t n) {
  V acc = Isa::zero();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc = Isa::add(Isa::load(a + i), acc);
  if (i < n) acc = Isa::add(Isa::tail(n - i).load(a + i), acc);
  return Isa::hsum(acc);
}

#else  // TIDAL_CPU_SCALAR

}  // namespace

void dot_block(const float* w, int64_t w_stride, int64_t n_rows, const float* x, int64_t x_stride, int64_t n_tokens,
               int64_t k, float* y, int64_t y_stride, const void*, int64_t) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < n_rows; ++r) y[t * y_stride + r] = dot(x + t * x_stride, w + r * w_stride, k);
  }
}

void dot_block_weights(const Weight& w, int64_t first_row, int64_t n_rows, const float* x, int64_t x_stride,
                       int64_t n_tokens, float* y, int64_t y_stride) {
  thread_local std::vector<float> row;  // grows to the widest row once per thread
  row.resize(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < n_rows; ++r) {
    dequantize_row(w.type, w.row(first_row + r), row.data(), w.cols);
    dot_block(row.data(), w.cols, 1, x, x_stride, n_tokens, w.cols, y + r, y_stride);
  }
}

float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

float sum(const float* a, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i];
  return acc;
}

#endif

}  // namespace tidal::cpu
