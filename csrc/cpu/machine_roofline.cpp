#include "cpu/machine_roofline.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "cpu/scratch.h"
#include "cpu/simd.h"

namespace tidal {

namespace {

constexpr size_t kBandwidthBytes = size_t(512) << 20;  // 16x a 32 MiB L3
// Best of many runs: on a shared or busy host the best run is the one that
// was not interrupted. FMA runs are short (~0.2 ms) so that some are.
constexpr int kBandwidthRuns = 10;
constexpr int kFmaRuns = 200;
constexpr int64_t kFmaIters = int64_t(1) << 16;

// Keeps results observable so the compiler cannot drop the work.
volatile float g_sink;

template <typename Fn>
double best_seconds(ThreadPool& pool, int runs, Fn&& fn) {
  double best = 1e30;
  for (int run = 0; run < runs; ++run) {
    const auto start = std::chrono::steady_clock::now();
    pool.run(fn);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

// Reads kStreams equal parts of [p, p + n) in lockstep: one sequential
// stream leaves the hardware prefetcher as the only source of parallel
// misses and reads well below what the memory system delivers to a kernel
// that, like the GEMV, streams many weight rows at once.
constexpr int kStreams = 16;

float sum_floats(const float* p, size_t n) {
  const size_t per = n / kStreams;
#if defined(TIDAL_CPU_AVX512)
  __m512 acc[kStreams];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  for (size_t i = 0; i < per; i += 16) {
#pragma GCC unroll 16
    for (int s = 0; s < kStreams; ++s) acc[s] = _mm512_add_ps(acc[s], _mm512_load_ps(p + s * per + i));
  }
  for (int s = 1; s < kStreams; ++s) acc[0] = _mm512_add_ps(acc[0], acc[s]);
  return _mm512_reduce_add_ps(acc[0]);
#elif defined(TIDAL_CPU_AVX2)
  __m256 acc[kStreams];
  for (__m256& a : acc) a = _mm256_setzero_ps();
  for (size_t i = 0; i < per; i += 8) {
#pragma GCC unroll 16
    for (int s = 0; s < kStreams; ++s) acc[s] = _mm256_add_ps(acc[s], _mm256_load_ps(p + s * per + i));
  }
  for (int s = 1; s < kStreams; ++s) acc[0] = _mm256_add_ps(acc[0], acc[s]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc[0]);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
#else
  float acc[kStreams] = {};
  for (size_t i = 0; i < per; ++i) {
    for (int s = 0; s < kStreams; ++s) acc[s] += p[s * per + i];
  }
  float total = 0.0f;
  for (float a : acc) total += a;
  return total;
#endif
}

// Runs `iters` rounds of kChains independent FMA chains; returns the FLOPs done.
double fma_loop(int64_t iters) {
#if defined(TIDAL_CPU_AVX512) || defined(TIDAL_CPU_AVX2)
#if defined(TIDAL_CPU_AVX512)
  using V = __m512;
  constexpr int kLanes = 16;
  auto set1 = [](float v) { return _mm512_set1_ps(v); };
  auto fma = [](V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); };
#else
  using V = __m256;
  constexpr int kLanes = 8;
  auto set1 = [](float v) { return _mm256_set1_ps(v); };
  auto fma = [](V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); };
#endif
  // More chains than FMA latency x FMA ports on current x86 cores; the
  // values converge to 1, so nothing overflows or goes subnormal.
  constexpr int kChains = 12;
  V acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = set1(g_sink + float(c));
  const V b = set1(0.999f), c0 = set1(0.001f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = fma(acc[c], b, c0);
  }
  alignas(64) float lanes[kLanes];
  V total = acc[0];
  for (int c = 1; c < kChains; ++c) total = fma(acc[c], b, total);
  std::copy_n(reinterpret_cast<const float*>(&total), kLanes, lanes);
  g_sink = lanes[0];
  return 2.0 * kLanes * kChains * double(iters);
#else
  constexpr int kChains = 8;
  float acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = g_sink + float(c);
  for (int64_t i = 0; i < iters; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * 0.999f + 0.001f;
  }
  g_sink = acc[0] + acc[kChains - 1];
  return 2.0 * kChains * double(iters);
#endif
}

}  // namespace

double measure_read_bandwidth_gbs(ThreadPool& pool) {
  cpu::ScratchBuffer buffer;
  // Every thread reads `per` floats, a whole number of kStreams cache lines
  // so each of its streams stays aligned.
  const size_t unit = size_t(kStreams) * 16;
  const size_t per = kBandwidthBytes / sizeof(float) / size_t(pool.size()) / unit * unit;
  float* data = buffer.get(per * size_t(pool.size()));
  // Each thread first-touches the part it later reads.
  pool.run([&](int index, int) { std::fill_n(data + per * size_t(index), per, 1.0f); });
  std::vector<float> sums(size_t(pool.size()) * 16);  // a cache line apart
  const double seconds = best_seconds(pool, kBandwidthRuns, [&](int index, int) {
    sums[size_t(index) * 16] = sum_floats(data + per * size_t(index), per);
  });
  g_sink = sums[0];
  return double(per * size_t(pool.size()) * sizeof(float)) / seconds * 1e-9;
}

double measure_f32_gemm_gflops(ThreadPool& pool) {
  std::vector<double> flops(size_t(pool.size()));
  const double seconds = best_seconds(pool, kFmaRuns, [&](int index, int) { flops[size_t(index)] = fma_loop(kFmaIters); });
  double total = 0.0;
  for (double f : flops) total += f;
  return total / seconds * 1e-9;
}

}  // namespace tidal
