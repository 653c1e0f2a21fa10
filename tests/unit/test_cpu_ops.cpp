// CPU backend ops against the float64 reference (tests/reference), the
// batch-invariance guarantee of backend.h, and the ThreadPool and KvCache
// they run on.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/dequantize.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/cpu_backend.h"
#include "cpu/dot_kernels.h"
#include "cpu/simd.h"
#include "kv/kv_cache.h"
#include "reference/reference_ops.h"

namespace tidal {
namespace {

constexpr double kUnitRoundoff = 0x1p-24;
constexpr DType kAllTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1};

std::vector<float> random_floats(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

struct OwnedWeight {
  std::vector<uint8_t> bytes;
  Weight view;
};

OwnedWeight random_weight(DType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  OwnedWeight w;
  w.view = Weight{type, rows, cols, nullptr};
  w.bytes.resize(w.view.bytes());
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<float> row = random_floats(rng, size_t(cols));
    quantize_row(type, row.data(), w.bytes.data() + r * w.view.row_bytes(), cols);
  }
  w.view.data = w.bytes.data();
  return w;
}

// The longest chain of roundings in one CPU dot product of length k: the
// per-lane accumulation plus the lane tree (cpu/dot_kernels.h).
double rounding_depth(int64_t k) {
#if defined(TIDAL_CPU_AVX512)
  return double((k + 15) / 16 + 4);
#elif defined(TIDAL_CPU_AVX2)
  return double((k + 7) / 8 + 3);
#else
  return double(k);
#endif
}

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// ---------------------------------------------------------------- ThreadPool

TEST(ThreadPool, SplitRangeCoversEveryItemOnceInOrder) {
  for (int count = 1; count <= 9; ++count) {
    for (int64_t n = 0; n <= 100; ++n) {
      int64_t expected_begin = 0;
      for (int i = 0; i < count; ++i) {
        int64_t b, e;
        split_range(n, i, count, &b, &e);
        ASSERT_EQ(b, expected_begin) << "n=" << n << " count=" << count;
        ASSERT_GE(e - b, n / count);
        ASSERT_LE(e - b, n / count + 1);
        expected_begin = e;
      }
      ASSERT_EQ(expected_begin, n);
    }
  }
}

TEST(ThreadPool, RunsEveryThreadOnceForManyTinyJobs) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    ASSERT_EQ(pool.size(), threads);
    // Fewer jobs when the pool outnumbers the cores: each then waits on the
    // OS scheduler rather than on a spinning worker.
    const int jobs = threads <= int(std::thread::hardware_concurrency()) ? 5000 : 500;
    std::vector<std::atomic<int>> calls(static_cast<size_t>(threads));
    for (int job = 0; job < jobs; ++job) {
      pool.run([&](int index, int count) {
        ASSERT_EQ(count, threads);
        calls[size_t(index)].fetch_add(1, std::memory_order_relaxed);
      });
    }
    for (int i = 0; i < threads; ++i) EXPECT_EQ(calls[size_t(i)].load(), jobs) << "thread " << i;
  }
}

TEST(ThreadPool, ParallelForVisitsEachIndexExactlyOnce) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 2, 3, 4, 7, 64, 1001}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    for (int rep = 0; rep < 100; ++rep) {
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        ASSERT_LT(b, e);
        for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1, std::memory_order_relaxed);
      });
    }
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 100) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPool, WorkersWakeAfterSleeping) {
  ThreadPool pool(2);
  std::atomic<int> calls{0};
  for (int job = 0; job < 3; ++job) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // long enough for workers to block
    pool.run([&](int, int) { calls.fetch_add(1); });
  }
  EXPECT_EQ(calls.load(), 6);
}

TEST(ThreadPool, ExceptionOnCallingThreadPropagatesAndPoolStaysUsable) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.run([](int index, int) {
    if (index == 0) throw std::runtime_error("boom");
  }),
               std::runtime_error);
  std::atomic<int> calls{0};
  pool.run([&](int, int) { calls.fetch_add(1); });
  EXPECT_EQ(calls.load(), 2);
}

TEST(ThreadPool, NonPositiveSizeMeansHardwareThreads) {
  ThreadPool pool(0);
  EXPECT_EQ(pool.size(), std::max(1, int(std::thread::hardware_concurrency())));
}

// ---------------------------------------------------------------- KvCache

TEST(KvCache, StartsZeroedAndCopiesBlocksAcrossLayers) {
  KvCacheShape shape{.n_layers = 2, .n_kv_heads = 2, .head_dim = 8, .block_size = 4, .num_blocks = 5};
  KvCache cache(shape);
  for (int l = 0; l < 2; ++l) {
    for (int b = 0; b < 5; ++b) {
      for (int h = 0; h < 2; ++h) {
        for (int i = 0; i < 4 * 8; ++i) {
          ASSERT_EQ(cache.key(l, b, h)[i], 0.0f);
          ASSERT_EQ(cache.value(l, b, h)[i], 0.0f);
        }
      }
    }
  }
  for (int l = 0; l < 2; ++l) {
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 4 * 8; ++i) {
        cache.key(l, 1, h)[i] = float(l * 1000 + h * 100 + i);
        cache.value(l, 1, h)[i] = -float(l * 1000 + h * 100 + i);
      }
    }
  }
  cache.copy_block(1, 3);
  for (int l = 0; l < 2; ++l) {
    for (int h = 0; h < 2; ++h) {
      EXPECT_TRUE(same_bits(cache.key(l, 3, h), cache.key(l, 1, h), 32));
      EXPECT_TRUE(same_bits(cache.value(l, 3, h), cache.value(l, 1, h), 32));
      EXPECT_EQ(cache.key(l, 2, h)[0], 0.0f);
    }
  }
}

// ---------------------------------------------------------------- dot kernels

TEST(CpuDotKernels, TiledBlockEqualsSingleDotBitForBit) {
  std::mt19937 rng(7);
  for (int64_t k : {1, 2, 15, 16, 17, 31, 33, 64, 100, 576}) {
    for (int64_t rows : {1, 3, 5, 8, 16, 17, 21}) {
      for (int64_t tokens : {1, 2, 3, 4, 5, 6, 9, 13}) {
        const std::vector<float> w = random_floats(rng, size_t(rows * k)), x = random_floats(rng, size_t(tokens * k));
        std::vector<float> y(static_cast<size_t>(rows * tokens));
        cpu::dot_block(w.data(), k, rows, x.data(), k, tokens, k, y.data(), rows);
        for (int64_t t = 0; t < tokens; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            const float single = cpu::dot(x.data() + t * k, w.data() + r * k, k);
            ASSERT_TRUE(same_bits(&y[size_t(t * rows + r)], &single, 1)) << "k=" << k << " r=" << r << " t=" << t;
          }
        }
      }
    }
  }
}

// Streaming weights in their stored format (decoded in registers, tiles
// drawn from far-apart regions once there are 512+ rows) gives the bits of
// dequantizing them first and running the F32 kernel.
TEST(CpuDotKernels, StreamedWeightsEqualDequantizedRows) {
  std::mt19937 rng(18);
  for (DType type : kAllTypes) {
    const std::vector<int64_t> ks =
        dtype_block_elems(type) == 1 ? std::vector<int64_t>{1, 9, 16, 17, 40, 172} : std::vector<int64_t>{32, 96, 576};
    for (int64_t k : ks) {
      for (int64_t rows : {1, 7, 16, 21, 600}) {
        const OwnedWeight w = random_weight(type, rows + 3, k, rng);
        std::vector<float> dequant(static_cast<size_t>(rows * k));
        for (int64_t r = 0; r < rows; ++r) dequantize_row(type, w.view.row(3 + r), dequant.data() + r * k, k);
        for (int64_t tokens : {1, 2, 3, 4, 6}) {
          const std::vector<float> x = random_floats(rng, size_t(tokens * k));
          std::vector<float> got(static_cast<size_t>(rows * tokens)), want(got.size());
          cpu::dot_block_weights(w.view, 3, rows, x.data(), k, tokens, got.data(), rows);
          cpu::dot_block(dequant.data(), k, rows, x.data(), k, tokens, k, want.data(), rows);
          ASSERT_TRUE(same_bits(got.data(), want.data(), got.size()))
              << dtype_name(type) << " k=" << k << " rows=" << rows << " tokens=" << tokens;
        }
      }
    }
  }
}

TEST(CpuDotKernels, SumIsDotWithOnes) {
  std::mt19937 rng(8);
  for (int64_t n : {1, 7, 16, 33, 1000}) {
    const std::vector<float> a = random_floats(rng, size_t(n)), ones(size_t(n), 1.0f);
    const float s = cpu::sum(a.data(), n), d = cpu::dot(a.data(), ones.data(), n);
    EXPECT_TRUE(same_bits(&s, &d, 1)) << n;
  }
}

// ---------------------------------------------------------------- matmul

// Bound: |y - y_ref| <= 2 (depth + 2) u sum_k |x_k w_k|, the first-order
// error of a dot product whose longest rounding chain is `depth`, plus the
// reference's own rounding to float, with a factor 2 of slack.
TEST(CpuMatmul, MatchesReferenceForEveryTypeAndShape) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(1);
  for (DType type : kAllTypes) {
    const std::vector<int64_t> ks = dtype_block_elems(type) == 1 ? std::vector<int64_t>{1, 17, 31, 64, 172, 576, 1000}
                                                                 : std::vector<int64_t>{32, 64, 160, 576, 1024};
    for (int64_t k : ks) {
      for (int64_t rows : {1, 5, 64, 193}) {
        const OwnedWeight w = random_weight(type, rows, k, rng);
        std::vector<float> dequant(static_cast<size_t>(rows * k));
        for (int64_t r = 0; r < rows; ++r) dequantize_row(type, w.view.row(r), dequant.data() + r * k, k);
        for (int n : {1, 3, 7, 33}) {
          SCOPED_TRACE(std::string(dtype_name(type)) + " k=" + std::to_string(k) + " rows=" + std::to_string(rows) +
                       " n=" + std::to_string(n));
          const std::vector<float> x = random_floats(rng, size_t(n * k));
          std::vector<float> y(static_cast<size_t>(n * rows), NAN), want(size_t(n * rows));
          cpu.matmul(w.view, x.data(), n, y.data());
          ref::matmul(w.view, x.data(), n, want.data());
          for (int t = 0; t < n; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              double magnitude = 0.0;
              for (int64_t i = 0; i < k; ++i) magnitude += std::fabs(double(x[t * k + i]) * dequant[r * k + i]);
              const double bound = 2.0 * (rounding_depth(k) + 2.0) * kUnitRoundoff * magnitude;
              const size_t at = size_t(t * rows + r);
              ASSERT_LE(std::fabs(double(y[at]) - want[at]), bound) << "t=" << t << " r=" << r;
            }
          }
        }
      }
    }
  }
}

TEST(CpuMatmul, NoTokensIsANoOp) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(2);
  const OwnedWeight w = random_weight(DType::F32, 8, 8, rng);
  float y = 42.0f;
  cpu.matmul(w.view, nullptr, 0, &y);
  EXPECT_EQ(y, 42.0f);
}

// Rows of a batch of 37 equal, bit for bit, the same rows computed alone
// (GEMV path), in a sub-batch at another offset, and with another number of
// threads; covers the row split (193 rows) and the token split (5 rows).
TEST(CpuMatmul, BatchInvariantAcrossBatchSizesAndThreadCounts) {
  ThreadPool pool1(1), pool2(2);
  CpuBackend cpu1(pool1), cpu2(pool2);
  std::mt19937 rng(3);
  constexpr int kBatch = 37;
  for (DType type : kAllTypes) {
    const int64_t k = dtype_block_elems(type) == 1 ? 172 : 576;
    for (int64_t rows : {5, 193}) {
      SCOPED_TRACE(std::string(dtype_name(type)) + " rows=" + std::to_string(rows));
      const OwnedWeight w = random_weight(type, rows, k, rng);
      const std::vector<float> x = random_floats(rng, size_t(kBatch * k));
      std::vector<float> batch1(static_cast<size_t>(kBatch * rows)), batch2(batch1.size());
      cpu1.matmul(w.view, x.data(), kBatch, batch1.data());
      cpu2.matmul(w.view, x.data(), kBatch, batch2.data());
      ASSERT_TRUE(same_bits(batch1.data(), batch2.data(), batch1.size()));
      for (CpuBackend* cpu : {&cpu1, &cpu2}) {
        std::vector<float> one(static_cast<size_t>(rows));
        for (int t = 0; t < kBatch; ++t) {
          cpu->matmul(w.view, x.data() + t * k, 1, one.data());
          ASSERT_TRUE(same_bits(one.data(), batch1.data() + t * rows, size_t(rows))) << "token " << t;
        }
        std::vector<float> sub(static_cast<size_t>(6 * rows));
        cpu->matmul(w.view, x.data() + 3 * k, 6, sub.data());
        ASSERT_TRUE(same_bits(sub.data(), batch1.data() + 3 * rows, sub.size()));
      }
    }
  }
}

// ---------------------------------------------------------------- embed

TEST(CpuEmbed, EqualsScalarDequantization) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(4);
  for (DType type : kAllTypes) {
    const int64_t cols = dtype_block_elems(type) == 1 ? 37 : 96, rows = 50;
    const OwnedWeight table = random_weight(type, rows, cols, rng);
    const std::vector<int32_t> ids = {0, 49, 7, 7, 23};
    std::vector<float> got(ids.size() * size_t(cols)), want(got.size());
    cpu.embed(table.view, ids.data(), int(ids.size()), got.data());
    ref::embed(table.view, ids.data(), int(ids.size()), want.data());
    for (size_t i = 0; i < got.size(); ++i) {
      // Q4_1's d*q+m may be rounded once (FMA) or twice depending on how the
      // compiler built dequantize_row; every other type is exact.
      const double tol = type == DType::Q4_1 ? 4 * kUnitRoundoff * (std::fabs(want[i]) + 2.0) : 0.0;
      ASSERT_LE(std::fabs(double(got[i]) - want[i]), tol) << dtype_name(type) << " element " << i;
    }
  }
}

TEST(CpuEmbed, RejectsIdsOutsideTheTable) {
  ThreadPool pool(1);
  CpuBackend cpu(pool);
  std::mt19937 rng(5);
  const OwnedWeight table = random_weight(DType::F32, 4, 8, rng);
  std::vector<float> out(8);
  const int32_t bad[] = {4, -1};
  for (int32_t id : bad) EXPECT_THROW(cpu.embed(table.view, &id, 1, out.data()), Error);
}

// ---------------------------------------------------------------- rmsnorm

TEST(CpuRmsnorm, MatchesReferenceAndMayAliasItsInput) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(6);
  for (int dim : {1, 17, 64, 576}) {
    for (int n : {1, 7, 80}) {
      const std::vector<float> x = random_floats(rng, size_t(n * dim), -3.0f, 3.0f), gamma = random_floats(rng, size_t(dim));
      std::vector<float> got(x.size()), want(x.size());
      cpu.rmsnorm(x.data(), gamma.data(), n, dim, 1e-5f, got.data());
      ref::rmsnorm(x.data(), gamma.data(), n, dim, 1e-5f, want.data());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i]) + 1e-7) << "dim=" << dim << " n=" << n;
      }
      std::vector<float> in_place = x;
      cpu.rmsnorm(in_place.data(), gamma.data(), n, dim, 1e-5f, in_place.data());
      EXPECT_TRUE(same_bits(in_place.data(), got.data(), got.size()));
      std::vector<float> one(static_cast<size_t>(dim));
      cpu.rmsnorm(x.data() + (n - 1) * dim, gamma.data(), 1, dim, 1e-5f, one.data());
      EXPECT_TRUE(same_bits(one.data(), got.data() + (n - 1) * dim, size_t(dim)));
    }
  }
}

// ---------------------------------------------------------------- rope

TEST(CpuRope, MatchesFloat64ReferenceUpToPosition8000) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(9);
  const std::vector<int32_t> positions = {0, 1, 17, 1000, 4095, 6001, 8000, 8191};
  const int n = int(positions.size());
  for (int head_dim : {8, 64, 128}) {
    for (float theta : {10000.0f, 500000.0f}) {
      const int n_heads = 3;
      const std::vector<float> x = random_floats(rng, size_t(n * n_heads * head_dim));
      std::vector<float> got = x, want = x;
      cpu.rope(got.data(), positions.data(), n, n_heads, head_dim, theta);
      ref::rope(want.data(), positions.data(), n, n_heads, head_dim, theta);
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], 1e-5) << "head_dim=" << head_dim << " theta=" << theta << " i=" << i;
      }
      for (int t = 0; t < n; ++t) {
        std::vector<float> one(x.begin() + t * n_heads * head_dim, x.begin() + (t + 1) * n_heads * head_dim);
        cpu.rope(one.data(), &positions[size_t(t)], 1, n_heads, head_dim, theta);
        ASSERT_TRUE(same_bits(one.data(), got.data() + t * n_heads * head_dim, one.size())) << "token " << t;
      }
    }
  }
}

// ---------------------------------------------------------------- silu_mul / add

TEST(CpuElementwise, SiluMulMatchesReference) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(10);
  for (int64_t n : {1, 15, 16, 17, 1000, 100003}) {
    std::vector<float> gate = random_floats(rng, size_t(n), -20.0f, 20.0f);
    const std::vector<float> up = random_floats(rng, size_t(n));
    if (n >= 4) {
      gate[0] = -1000.0f;
      gate[1] = 1000.0f;
      gate[2] = -90.0f;
      gate[3] = 0.0f;
    }
    std::vector<float> got = gate, want = gate;
    cpu.silu_mul(got.data(), up.data(), n);
    ref::silu_mul(want.data(), up.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i]) + 1e-30) << "n=" << n << " gate=" << gate[i];
    }
  }
}

// Bound: each output is a sum of `block` terms +-v_j through log2(block)
// levels of additions, then one scaling: (log2(block) + 2) u sum|v_j| /
// sqrt(block), with a factor 2 of slack.
TEST(CpuElementwise, HadamardMatchesReferenceIsItsOwnInverseAndIsPerRow) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(12);
  for (const auto& [rows, width, block] : std::vector<std::array<int, 3>>{
           {1, 1, 1}, {3, 8, 2}, {5, 172, 4}, {7, 1536, 512}, {64, 1536, 512}, {2, 64, 64}}) {
    SCOPED_TRACE("rows=" + std::to_string(rows) + " width=" + std::to_string(width) + " block=" + std::to_string(block));
    const std::vector<float> x = random_floats(rng, size_t(rows) * width);
    std::vector<float> got = x, want = x;
    cpu.hadamard(got.data(), rows, width, block);
    ref::hadamard(want.data(), rows, width, block);
    const double levels = std::log2(double(block));
    for (int r = 0; r < rows; ++r) {
      for (int b = 0; b < width; b += block) {
        double magnitude = 0;
        for (int j = 0; j < block; ++j) magnitude += std::fabs(double(x[size_t(r) * width + b + j]));
        const double bound = 2.0 * (levels + 2.0) * kUnitRoundoff * magnitude / std::sqrt(double(block));
        for (int j = 0; j < block; ++j) {
          const size_t at = size_t(r) * width + b + j;
          ASSERT_LE(std::fabs(double(got[at]) - want[at]), bound) << at;
        }
      }
    }
    // Each row alone gives the bits it gets in the batch.
    for (int r = 0; r < rows; ++r) {
      std::vector<float> one(x.begin() + size_t(r) * width, x.begin() + size_t(r + 1) * width);
      cpu.hadamard(one.data(), 1, width, block);
      ASSERT_TRUE(same_bits(one.data(), got.data() + size_t(r) * width, size_t(width))) << "row " << r;
    }
    // H / sqrt(n) is orthogonal and symmetric: applying it twice gives x back.
    cpu.hadamard(got.data(), rows, width, block);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(got[i], x[i], 1e-5 * (1.0 + std::fabs(x[i]))) << i;
  }
  std::vector<float> x(12);
  EXPECT_THROW(cpu.hadamard(x.data(), 1, 12, 3), Error);
  EXPECT_THROW(cpu.hadamard(x.data(), 1, 12, 8), Error);
}

TEST(CpuElementwise, AddIsExact) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(11);
  for (int64_t n : {1, 33, 100003}) {
    std::vector<float> x = random_floats(rng, size_t(n));
    const std::vector<float> y = random_floats(rng, size_t(n));
    std::vector<float> want(x.size());
    for (int64_t i = 0; i < n; ++i) want[i] = x[i] + y[i];
    cpu.add(x.data(), y.data(), n);
    EXPECT_TRUE(same_bits(x.data(), want.data(), want.size()));
  }
}

// ---------------------------------------------------------------- kv_write / attention

// Sequences with their own K/V/Q per position, placed in shuffled blocks.
struct AttentionFixture {
  KvCacheShape shape;
  int n_heads;
  int layer = 1;
  std::vector<int> lengths;                    // positions each sequence will hold
  std::vector<std::vector<int32_t>> tables;    // per sequence
  std::vector<std::vector<float>> k, v, q;     // per sequence: [pos][row]

  AttentionFixture(KvCacheShape s, int heads, std::vector<int> lens, std::mt19937& rng)
      : shape(s), n_heads(heads), lengths(std::move(lens)) {
    std::vector<int32_t> blocks(static_cast<size_t>(shape.num_blocks));
    std::iota(blocks.begin(), blocks.end(), 0);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    size_t next = 0;
    const size_t kv_row = size_t(shape.n_kv_heads) * shape.head_dim, q_row = size_t(n_heads) * shape.head_dim;
    for (int len : lengths) {
      const int n_blocks = (len + shape.block_size - 1) / shape.block_size;
      tables.emplace_back(blocks.begin() + long(next), blocks.begin() + long(next) + n_blocks);
      next += size_t(n_blocks);
      k.push_back(random_floats(rng, size_t(len) * kv_row));
      v.push_back(random_floats(rng, size_t(len) * kv_row));
      q.push_back(random_floats(rng, size_t(len) * q_row));
    }
  }

  // kv_write then (unless write_only) attention for the given (sequence,
  // position) tokens; returns attention's output rows.
  std::vector<float> step(Backend& backend, KvCache& cache, const std::vector<std::pair<int, int>>& tokens,
                          bool write_only = false) const {
    const size_t kv_row = size_t(shape.n_kv_heads) * shape.head_dim, q_row = size_t(n_heads) * shape.head_dim;
    std::vector<int32_t> positions, seq_index, slots;
    std::vector<float> kb, vb, qb;
    for (auto [seq, pos] : tokens) {
      positions.push_back(pos);
      seq_index.push_back(seq);
      slots.push_back(tables[size_t(seq)][size_t(pos / shape.block_size)] * shape.block_size + pos % shape.block_size);
      kb.insert(kb.end(), k[size_t(seq)].begin() + long(pos * kv_row), k[size_t(seq)].begin() + long((pos + 1) * kv_row));
      vb.insert(vb.end(), v[size_t(seq)].begin() + long(pos * kv_row), v[size_t(seq)].begin() + long((pos + 1) * kv_row));
      qb.insert(qb.end(), q[size_t(seq)].begin() + long(pos * q_row), q[size_t(seq)].begin() + long((pos + 1) * q_row));
    }
    AttentionMeta meta;
    meta.n_tokens = int(tokens.size());
    meta.positions = positions.data();
    meta.seq_index = seq_index.data();
    meta.slot_mapping = slots.data();
    for (const auto& t : tables) meta.block_tables.emplace_back(t);
    backend.kv_write(cache, layer, kb.data(), vb.data(), meta);
    std::vector<float> out(tokens.size() * q_row, NAN);
    if (write_only) return out;
    backend.attention(cache, layer, qb.data(), meta, n_heads, out.data());
    return out;
  }

  // Every sequence's positions [begin, end) (clamped to its length), in one batch.
  std::vector<std::pair<int, int>> span_of_all(int begin, int end) const {
    std::vector<std::pair<int, int>> tokens;
    for (int s = 0; s < int(lengths.size()); ++s) {
      for (int p = begin; p < std::min(end, lengths[size_t(s)]); ++p) tokens.emplace_back(s, p);
    }
    return tokens;
  }
};

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::fabs(want[i]))) << i;
}

TEST(CpuAttention, KvWritePlacesRowsLikeTheReference) {
  std::mt19937 rng(12);
  const AttentionFixture f({.n_layers = 2, .n_kv_heads = 2, .head_dim = 24, .block_size = 4, .num_blocks = 16}, 4,
                           {9, 3, 14}, rng);
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  ref::ReferenceBackend reference;
  KvCache a(f.shape), b(f.shape);
  f.step(cpu, a, f.span_of_all(0, 14));
  f.step(reference, b, f.span_of_all(0, 14));
  for (int blk = 0; blk < f.shape.num_blocks; ++blk) {
    for (int h = 0; h < f.shape.n_kv_heads; ++h) {
      ASSERT_TRUE(same_bits(a.key(1, blk, h), b.key(1, blk, h), 4 * 24));
      ASSERT_TRUE(same_bits(a.value(1, blk, h), b.value(1, blk, h), 4 * 24));
      ASSERT_EQ(a.key(0, blk, h)[0], 0.0f);  // other layers untouched
    }
  }
}

// Prefill of three ragged sequences in one batch, then a decode step for
// each, against the reference; with GQA (6 heads over 2 KV heads) and
// without, and a head_dim / block_size that leave vector and block tails.
TEST(CpuAttention, PrefillAndDecodeMatchReference) {
  const KvCacheShape shapes[] = {{.n_layers = 2, .n_kv_heads = 2, .head_dim = 64, .block_size = 16, .num_blocks = 32},
                                 {.n_layers = 2, .n_kv_heads = 3, .head_dim = 40, .block_size = 8, .num_blocks = 48}};
  const int heads[] = {6, 3};
  for (int c = 0; c < 2; ++c) {
    std::mt19937 rng(13);
    const AttentionFixture f(shapes[c], heads[c], {38, 5, 71}, rng);  // the last position of each is the decode step
    ThreadPool pool(2);
    CpuBackend cpu(pool);
    ref::ReferenceBackend reference;
    KvCache a(f.shape), b(f.shape);
    std::vector<std::pair<int, int>> prefill, decode;
    for (auto tok : f.span_of_all(0, 71)) {
      (tok.second + 1 < f.lengths[size_t(tok.first)] ? prefill : decode).push_back(tok);
    }
    expect_close(f.step(cpu, a, prefill), f.step(reference, b, prefill), 2e-5);
    expect_close(f.step(cpu, a, decode), f.step(reference, b, decode), 2e-5);
  }
}

// A token's output is the same bits whether it ran in a prefill batch with
// other sequences, in a chunk of its own sequence, or alone as a decode
// step, and with one or two threads.
TEST(CpuAttention, BatchInvariantAcrossPrefillChunksAndDecode) {
  std::mt19937 rng(14);
  const AttentionFixture f({.n_layers = 2, .n_kv_heads = 2, .head_dim = 64, .block_size = 16, .num_blocks = 32}, 6,
                           {40, 9, 57}, rng);
  const size_t q_row = size_t(f.n_heads) * f.shape.head_dim;
  ThreadPool pool2(2);
  CpuBackend cpu2(pool2);
  KvCache whole(f.shape);
  const auto all = f.span_of_all(0, 57);
  const std::vector<float> batched = f.step(cpu2, whole, all);

  ThreadPool pool1(1);
  CpuBackend cpu1(pool1);
  for (CpuBackend* cpu : {&cpu1, &cpu2}) {
    for (int chunk : {1, 7}) {
      KvCache cache(f.shape);
      for (int s = 0; s < 3; ++s) {
        for (int p = 0; p < f.lengths[size_t(s)]; p += chunk) {
          std::vector<std::pair<int, int>> tokens;
          for (int i = p; i < std::min(p + chunk, f.lengths[size_t(s)]); ++i) tokens.emplace_back(s, i);
          const std::vector<float> out = f.step(*cpu, cache, tokens);
          for (size_t i = 0; i < tokens.size(); ++i) {
            const size_t at = size_t(std::find(all.begin(), all.end(), tokens[i]) - all.begin());
            ASSERT_TRUE(same_bits(out.data() + i * q_row, batched.data() + at * q_row, q_row))
                << "seq " << s << " pos " << tokens[i].second << " chunk " << chunk;
          }
        }
      }
    }
  }
}

// Same, for query runs that straddle the 1024-position chunks attention
// splits long contexts into (cpu/attention.h).
TEST(CpuAttention, BatchInvariantAcrossPositionChunks) {
  std::mt19937 rng(17);
  const AttentionFixture f({.n_layers = 2, .n_kv_heads = 2, .head_dim = 64, .block_size = 16, .num_blocks = 140}, 6,
                           {2100}, rng);
  const size_t q_row = size_t(f.n_heads) * f.shape.head_dim;
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  KvCache cache(f.shape);
  f.step(cpu, cache, f.span_of_all(0, 2100), /*write_only=*/true);
  std::vector<std::pair<int, int>> tokens;
  for (int p = 1013; p < 1040; ++p) tokens.emplace_back(0, p);
  for (int p = 2041; p < 2060; ++p) tokens.emplace_back(0, p);
  const std::vector<float> batched = f.step(cpu, cache, tokens);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::vector<float> one = f.step(cpu, cache, {tokens[i]});
    ASSERT_TRUE(same_bits(one.data(), batched.data() + i * q_row, q_row)) << "pos " << tokens[i].second;
  }
}

TEST(CpuAttention, LongContextDecodeMatchesReference) {
  std::mt19937 rng(15);
  const AttentionFixture f({.n_layers = 2, .n_kv_heads = 1, .head_dim = 64, .block_size = 16, .num_blocks = 520}, 2,
                           {8192}, rng);
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  ref::ReferenceBackend reference;
  KvCache a(f.shape), b(f.shape);
  f.step(cpu, a, f.span_of_all(0, 8191), /*write_only=*/true);
  f.step(reference, b, f.span_of_all(0, 8191), /*write_only=*/true);
  expect_close(f.step(cpu, a, {{0, 8191}}), f.step(reference, b, {{0, 8191}}), 2e-5);
}

TEST(CpuAttention, RejectsPositionsPastTheBlockTable) {
  std::mt19937 rng(16);
  const AttentionFixture f({.n_layers = 2, .n_kv_heads = 1, .head_dim = 16, .block_size = 4, .num_blocks = 4}, 1, {4},
                           rng);
  ThreadPool pool(1);
  CpuBackend cpu(pool);
  KvCache cache(f.shape);
  const int32_t pos = 4, seq = 0, slot = 0;
  AttentionMeta meta;
  meta.n_tokens = 1;
  meta.positions = &pos;
  meta.seq_index = &seq;
  meta.slot_mapping = &slot;
  meta.block_tables.emplace_back(f.tables[0]);
  std::vector<float> q(16), out(16);
  EXPECT_THROW(cpu.attention(cache, 1, q.data(), meta, 1, out.data()), Error);
}

}  // namespace
}  // namespace tidal
