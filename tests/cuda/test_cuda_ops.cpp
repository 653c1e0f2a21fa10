// CUDA backend ops against the float64 reference (tests/reference) on random
// inputs, with the error bound each dtype and op is held to, and the batch
// invariance backend.h demands. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <string>

#include "core/error.h"
#include "cpu/elementwise.h"
#include "cuda/cuda_backend.h"
#include "cuda/weight_upload.h"
#include "cuda_test_util.h"
#include "reference/reference_ops.h"

namespace tidal::cuda::test {
namespace {

constexpr double kUnitRoundoff = 0x1p-24;

// Longest chain of roundings in one output of matmul_rows: a lane's run of
// chunks (32-value blocks, or 8 values of a plain type), then the 5-level
// lane tree.
double rounding_depth(DType type, int64_t k) {
  const int64_t chunk = dtype_block_elems(type) == 1 ? 8 : 32;
  const int64_t chunks = (k + chunk - 1) / chunk;
  return double((chunks + 31) / 32 * chunk + 5);
}

std::vector<float> dequantized(const Weight& w) {
  std::vector<float> out(size_t(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) dequantize_row(w.type, w.row(r), out.data() + r * w.cols, w.cols);
  return out;
}

// sum_k |x_k w_k| for every (token, row).
std::vector<double> magnitudes(const std::vector<float>& x, const std::vector<float>& w, int n, int64_t rows,
                               int64_t k) {
  std::vector<double> m(size_t(n * rows), 0.0);
  for (int t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < k; ++i) m[size_t(t * rows + r)] += std::fabs(double(x[t * k + i]) * w[r * k + i]);
  return m;
}

class CudaOps : public CudaTest {};

// ---------------------------------------------------------------- matmul

// Bound, as for the CPU: 2 (depth + 2) u sum |x w| (first-order error of a
// dot product with that rounding depth, plus the reference's final rounding,
// with a factor 2 of slack).
TEST_F(CudaOps, MatmulMatchesReferenceForEveryTypeAndShape) {
  CudaBackend gpu;
  std::mt19937 rng(1);
  for (DType type : kAllTypes) {
    const std::vector<int64_t> ks = dtype_block_elems(type) == 1 ? std::vector<int64_t>{1, 17, 31, 64, 172, 576, 1000}
                                                                 : std::vector<int64_t>{32, 64, 160, 576, 1024, 4096};
    for (int64_t k : ks) {
      for (int64_t rows : {1, 5, 64, 193}) {
        const HostWeight w = random_weight(type, rows, k, rng);
        const DeviceWeight dw = upload_weight(w.view);
        const std::vector<float> wf = dequantized(w.view);
        for (int n : {1, 3, 7, 33}) {
          SCOPED_TRACE(std::string(dtype_name(type)) + " k=" + std::to_string(k) + " rows=" + std::to_string(rows) +
                       " n=" + std::to_string(n));
          const std::vector<float> x = random_floats(rng, size_t(n * k));
          const DeviceBuffer dx = to_device(x);
          DeviceBuffer dy(size_t(n * rows) * sizeof(float));
          gpu.matmul(dw.view, dx.as<float>(), n, dy.as<float>());
          const std::vector<float> y = to_host<float>(dy.data(), size_t(n * rows));
          std::vector<float> want(size_t(n * rows));
          ref::matmul(w.view, x.data(), n, want.data());
          const std::vector<double> mag = magnitudes(x, wf, n, rows, k);
          for (size_t i = 0; i < y.size(); ++i) {
            const double bound = 2.0 * (rounding_depth(type, k) + 2.0) * kUnitRoundoff * mag[i];
            ASSERT_LE(std::fabs(double(y[i]) - want[i]), bound) << "output " << i;
          }
        }
      }
    }
  }
}

// A token's row is the same bits alone, in a batch of 37 and in a sub-batch
// at another offset (the 8-token tiles then cut the batch differently).
TEST_F(CudaOps, MatmulIsBatchInvariant) {
  CudaBackend gpu;
  std::mt19937 rng(3);
  constexpr int kBatch = 37;
  for (DType type : kAllTypes) {
    const int64_t k = dtype_block_elems(type) == 1 ? 172 : 576, rows = 193;
    SCOPED_TRACE(dtype_name(type));
    const HostWeight w = random_weight(type, rows, k, rng);
    const DeviceWeight dw = upload_weight(w.view);
    const DeviceBuffer dx = to_device(random_floats(rng, size_t(kBatch * k)));
    DeviceBuffer all(size_t(kBatch * rows) * sizeof(float)), one(size_t(rows) * sizeof(float)),
        sub(size_t(6 * rows) * sizeof(float));
    gpu.matmul(dw.view, dx.as<float>(), kBatch, all.as<float>());
    const std::vector<float> batch = to_host<float>(all.data(), size_t(kBatch * rows));
    for (int t = 0; t < kBatch; ++t) {
      gpu.matmul(dw.view, dx.as<float>() + t * k, 1, one.as<float>());
      ASSERT_TRUE(same_bits(to_host<float>(one.data(), size_t(rows)).data(), batch.data() + t * rows, size_t(rows)))
          << "token " << t;
    }
    gpu.matmul(dw.view, dx.as<float>() + 3 * k, 6, sub.as<float>());
    ASSERT_TRUE(same_bits(to_host<float>(sub.data(), size_t(6 * rows)).data(), batch.data() + 3 * rows, size_t(6 * rows)));
  }
}

// The cuBLAS path rounds activations (and quantized weights) to 16 bits:
// bound 2 (2 u16 + (k + 2) u) sum |x w|, u16 = 2^-11 for F16, 2^-8 for BF16.
TEST_F(CudaOps, TensorCoreMatmulMatchesReferenceWithin16BitRounding) {
  CudaBackend gpu({.tensor_core_min_tokens = 1});
  std::mt19937 rng(4);
  for (DType type : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    const int64_t k = 576, rows = 193;
    const int n = 40;
    SCOPED_TRACE(dtype_name(type));
    const HostWeight w = random_weight(type, rows, k, rng);
    const DeviceWeight dw = upload_weight(w.view);
    const std::vector<float> x = random_floats(rng, size_t(n * k));
    const DeviceBuffer dx = to_device(x);
    DeviceBuffer dy(size_t(n * rows) * sizeof(float));
    gpu.matmul(dw.view, dx.as<float>(), n, dy.as<float>());
    const std::vector<float> y = to_host<float>(dy.data(), size_t(n * rows));
    std::vector<float> want(y.size());
    ref::matmul(w.view, x.data(), n, want.data());
    const std::vector<double> mag = magnitudes(x, dequantized(w.view), n, rows, k);
    const double u16 = type == DType::BF16 ? 0x1p-8 : 0x1p-11;
    for (size_t i = 0; i < y.size(); ++i) {
      ASSERT_LE(std::fabs(double(y[i]) - want[i]), 2.0 * (2 * u16 + (k + 2) * kUnitRoundoff) * mag[i]) << i;
    }
  }
}

TEST_F(CudaOps, MatmulOfNoTokensIsANoOp) {
  CudaBackend gpu;
  std::mt19937 rng(2);
  const DeviceWeight dw = upload_weight(random_weight(DType::F32, 8, 8, rng).view);
  const DeviceBuffer dy = to_device(std::vector<float>{42.0f});
  gpu.matmul(dw.view, nullptr, 0, dy.as<float>());
  EXPECT_EQ(to_host<float>(dy.data(), 1)[0], 42.0f);
}

// ---------------------------------------------------------------- embed

TEST_F(CudaOps, EmbedEqualsScalarDequantization) {
  CudaBackend gpu;
  std::mt19937 rng(5);
  for (DType type : kAllTypes) {
    const int64_t cols = dtype_block_elems(type) == 1 ? 37 : 96, rows = 50;
    const HostWeight table = random_weight(type, rows, cols, rng);
    const DeviceWeight dt = upload_weight(table.view);
    const std::vector<int32_t> ids = {0, 49, 7, 7, 23};
    DeviceBuffer out(ids.size() * size_t(cols) * sizeof(float));
    gpu.embed(dt.view, ids.data(), int(ids.size()), out.as<float>());
    const std::vector<float> got = to_host<float>(out.data(), ids.size() * size_t(cols));
    std::vector<float> want(got.size());
    ref::embed(table.view, ids.data(), int(ids.size()), want.data());
    for (size_t i = 0; i < got.size(); ++i) {
      // Q4_1's d*q+m is one FMA on the device, maybe two roundings on the host.
      const double tol = type == DType::Q4_1 ? 4 * kUnitRoundoff * (std::fabs(want[i]) + 2.0) : 0.0;
      ASSERT_LE(std::fabs(double(got[i]) - want[i]), tol) << dtype_name(type) << " element " << i;
    }
  }
}

TEST_F(CudaOps, EmbedRejectsIdsOutsideTheTable) {
  CudaBackend gpu;
  std::mt19937 rng(6);
  const DeviceWeight table = upload_weight(random_weight(DType::F32, 4, 8, rng).view);
  DeviceBuffer out(8 * sizeof(float));
  for (int32_t id : {4, -1}) EXPECT_THROW(gpu.embed(table.view, &id, 1, out.as<float>()), Error);
}

// ---------------------------------------------------------------- rmsnorm, rope, silu_mul, add

TEST_F(CudaOps, RmsnormMatchesReferenceMayAliasAndIsPerRow) {
  CudaBackend gpu;
  std::mt19937 rng(7);
  for (int dim : {1, 17, 64, 576, 4096}) {
    for (int n : {1, 7, 80}) {
      const std::vector<float> x = random_floats(rng, size_t(n * dim), -3.0f, 3.0f), gamma = random_floats(rng, size_t(dim));
      const DeviceBuffer dx = to_device(x), dg = to_device(gamma);
      DeviceBuffer dout(x.size() * sizeof(float));
      gpu.rmsnorm(dx.as<float>(), dg.as<float>(), n, dim, 1e-5f, dout.as<float>());
      const std::vector<float> got = to_host<float>(dout.data(), x.size());
      std::vector<float> want(x.size());
      ref::rmsnorm(x.data(), gamma.data(), n, dim, 1e-5f, want.data());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i]) + 1e-7) << "dim=" << dim << " n=" << n;
      }
      gpu.rmsnorm(dx.as<float>(), dg.as<float>(), n, dim, 1e-5f, dx.as<float>());
      EXPECT_TRUE(same_bits(to_host<float>(dx.data(), x.size()).data(), got.data(), got.size()));
      const DeviceBuffer last = to_device(std::vector<float>(x.end() - dim, x.end()));
      gpu.rmsnorm(last.as<float>(), dg.as<float>(), 1, dim, 1e-5f, last.as<float>());
      EXPECT_TRUE(same_bits(to_host<float>(last.data(), size_t(dim)).data(), got.data() + (n - 1) * dim, size_t(dim)));
    }
  }
}

TEST_F(CudaOps, RopeMatchesFloat64ReferenceUpToPosition8000) {
  CudaBackend gpu;
  std::mt19937 rng(9);
  const std::vector<int32_t> positions = {0, 1, 17, 1000, 4095, 6001, 8000, 8191};
  const int n = int(positions.size()), n_heads = 3;
  for (int head_dim : {8, 64, 128}) {
    for (float theta : {10000.0f, 500000.0f}) {
      const std::vector<float> x = random_floats(rng, size_t(n * n_heads * head_dim));
      const DeviceBuffer dx = to_device(x);
      gpu.rope(dx.as<float>(), positions.data(), n, n_heads, head_dim, theta);
      const std::vector<float> got = to_host<float>(dx.data(), x.size());
      std::vector<float> want = x;
      ref::rope(want.data(), positions.data(), n, n_heads, head_dim, theta);
      for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5) << head_dim << " " << theta << " " << i;
      const size_t row = size_t(n_heads * head_dim);
      const DeviceBuffer one = to_device(std::vector<float>(x.begin() + 5 * row, x.begin() + 6 * row));
      gpu.rope(one.as<float>(), &positions[5], 1, n_heads, head_dim, theta);
      EXPECT_TRUE(same_bits(to_host<float>(one.data(), row).data(), got.data() + 5 * row, row));
    }
  }
}

TEST_F(CudaOps, SiluMulMatchesReferenceAtTheExtremes) {
  CudaBackend gpu;
  std::mt19937 rng(10);
  for (int64_t n : {1, 17, 1000, 100003}) {
    std::vector<float> gate = random_floats(rng, size_t(n), -20.0f, 20.0f);
    const std::vector<float> up = random_floats(rng, size_t(n));
    if (n >= 4) gate[0] = -1000.0f, gate[1] = 1000.0f, gate[2] = -90.0f, gate[3] = 0.0f;
    const DeviceBuffer dg = to_device(gate), du = to_device(up);
    gpu.silu_mul(dg.as<float>(), du.as<float>(), n);
    const std::vector<float> got = to_host<float>(dg.data(), size_t(n));
    std::vector<float> want = gate;
    ref::silu_mul(want.data(), up.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i]) + 1e-30) << gate[i];
  }
}

// The same butterflies in the same order as the host: the same bits.
TEST_F(CudaOps, HadamardEqualsTheHostBitForBit) {
  CudaBackend gpu;
  std::mt19937 rng(13);
  for (const auto& [rows, width, block] :
       std::vector<std::array<int, 3>>{{1, 1, 1}, {5, 172, 4}, {33, 1536, 512}, {2, 64, 64}}) {
    const std::vector<float> x = random_floats(rng, size_t(rows) * width);
    const DeviceBuffer dx = to_device(x);
    gpu.hadamard(dx.as<float>(), rows, width, block);
    std::vector<float> want = x;
    tidal::cpu::hadamard_rows(want.data(), rows, width, block);
    EXPECT_TRUE(same_bits(to_host<float>(dx.data(), want.size()).data(), want.data(), want.size()))
        << rows << "x" << width << " block " << block;
  }
}

TEST_F(CudaOps, AddIsExact) {
  CudaBackend gpu;
  std::mt19937 rng(11);
  for (int64_t n : {1, 33, 100003}) {
    const std::vector<float> x = random_floats(rng, size_t(n)), y = random_floats(rng, size_t(n));
    const DeviceBuffer dx = to_device(x), dy = to_device(y);
    gpu.add(dx.as<float>(), dy.as<float>(), n);
    std::vector<float> want(x.size());
    for (int64_t i = 0; i < n; ++i) want[i] = x[i] + y[i];
    EXPECT_TRUE(same_bits(to_host<float>(dx.data(), size_t(n)).data(), want.data(), want.size()));
  }
}

TEST_F(CudaOps, GatherRowsCopiesTheChosenRows) {
  CudaBackend gpu;
  std::mt19937 rng(12);
  const std::vector<float> x = random_floats(rng, 5 * 7);
  const DeviceBuffer dx = to_device(x);
  DeviceBuffer out(2 * 7 * sizeof(float));
  const int32_t rows[] = {4, 1};
  gpu.gather_rows(dx.as<float>(), rows, 2, 7, out.as<float>());
  const std::vector<float> got = to_host<float>(out.data(), 14);
  EXPECT_TRUE(same_bits(got.data(), x.data() + 28, 7));
  EXPECT_TRUE(same_bits(got.data() + 7, x.data() + 7, 7));
}

}  // namespace
}  // namespace tidal::cuda::test
