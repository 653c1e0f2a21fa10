// An independent F32 GEMM rate for bench-offline to hold prefill against:
// OpenBLAS's sgemm on the model's own matrix shapes, timed on this machine
// in the same run. OpenBLAS is loaded at run time (dlopen), so tidal neither
// links nor needs it; without it the reference is simply absent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tidal {

// y[m][n] = x[m][k] · W[n][k]^T: m tokens through an n x k weight matrix.
struct GemmShape {
  int64_t m = 0, n = 0, k = 0;
};

struct BlasRate {
  double gflops = 0;      // sum of FLOPs / sum of each shape's best time
  std::string library;    // e.g. "OpenBLAS 0.3.21 (SkylakeX kernels, 2 threads)"
};

// Best of `repeats` timings of each shape, threads set to `threads`.
// std::nullopt with `why` filled when no OpenBLAS can be loaded.
std::optional<BlasRate> measure_blas_sgemm(const std::vector<GemmShape>& shapes, int threads, int repeats,
                                           std::string* why);

}  // namespace tidal
