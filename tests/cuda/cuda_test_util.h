// Shared by the CUDA tests: the skip-without-a-GPU fixture, host <-> device
// copies and random inputs.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/dequantize.h"
#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/device_info.h"
#include "model/weight.h"

namespace tidal::cuda::test {

// Tests that touch the GPU derive from this: where there is none (CI, this
// project's build machines) they are reported as skipped, with the reason.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

template <typename T>
DeviceBuffer to_device(const std::vector<T>& host) {
  DeviceBuffer d(std::max<size_t>(host.size(), 1) * sizeof(T));
  check(cudaMemcpy(d.data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "test upload");
  return d;
}

template <typename T>
std::vector<T> to_host(const void* device, size_t n) {
  std::vector<T> host(n);
  check(cudaDeviceSynchronize(), "test sync");
  check(cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost), "test download");
  return host;
}

inline std::vector<float> random_floats(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// A host matrix of random values quantized to `type`.
struct HostWeight {
  std::vector<uint8_t> bytes;
  Weight view;
};

inline HostWeight random_weight(DType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  HostWeight w;
  w.view = Weight{type, rows, cols, nullptr};
  w.bytes.resize(w.view.bytes());
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<float> row = random_floats(rng, size_t(cols));
    quantize_row(type, row.data(), w.bytes.data() + r * w.view.row_bytes(), cols);
  }
  w.view.data = w.bytes.data();
  return w;
}

inline bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

constexpr DType kAllTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1};

}  // namespace tidal::cuda::test
