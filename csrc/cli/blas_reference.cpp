#include "cli/blas_reference.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "core/aligned_vector.h"

namespace tidal {

namespace {

// cblas.h's enum values, spelled out so that no BLAS header is needed.
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;

using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using SetThreadsFn = void (*)(int);
using NameFn = char* (*)();

// OpenBLAS picks its kernels from the CPU model at load time and falls back
// to SSE3 ("Prescott") for models newer than its tables (0.3.21 on recent
// Xeons), which would make a poor reference. Unless the user chose, name the
// best kernel set the CPU's features allow; it must be set before dlopen.
void choose_openblas_kernels() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  __builtin_cpu_init();
  const char* core = nullptr;
  if (__builtin_cpu_supports("avx512bf16")) {
    core = "Cooperlake";
  } else if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    core = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    core = "Haswell";
  }
  if (core != nullptr) setenv("OPENBLAS_CORETYPE", core, 0);
}

template <typename T>
T symbol(void* lib, const char* name) {
  return reinterpret_cast<T>(dlsym(lib, name));
}

}  // namespace

std::optional<BlasRate> measure_blas_sgemm(const std::vector<GemmShape>& shapes, int threads, int repeats,
                                           std::string* why) {
  choose_openblas_kernels();
  void* lib = nullptr;
  for (const char* name : {"libopenblas.so.0", "libopenblas.so"}) {
    if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
  }
  if (lib == nullptr) {
    *why = "OpenBLAS not found (apt-get install libopenblas0)";
    return std::nullopt;
  }
  const auto sgemm = symbol<SgemmFn>(lib, "cblas_sgemm");
  const auto set_threads = symbol<SetThreadsFn>(lib, "openblas_set_num_threads");
  const auto corename = symbol<NameFn>(lib, "openblas_get_corename");
  const auto config = symbol<NameFn>(lib, "openblas_get_config");
  if (sgemm == nullptr || set_threads == nullptr) {
    *why = "the OpenBLAS found lacks cblas_sgemm or openblas_set_num_threads";
    return std::nullopt;
  }
  set_threads(threads);

  double flops = 0, seconds = 0;
  for (const GemmShape& s : shapes) {
    AlignedVector<float> x(size_t(s.m * s.k), 0.5f), w(size_t(s.n * s.k), 0.25f), y(size_t(s.m * s.n));
    auto run = [&] {
      sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, int(s.m), int(s.n), int(s.k), 1.0f, x.data(), int(s.k),
            w.data(), int(s.k), 0.0f, y.data(), int(s.n));
    };
    run();  // first call: OpenBLAS starts its threads and sizes its buffers
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      run();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    flops += 2.0 * double(s.m) * double(s.n) * double(s.k);
    seconds += best;
  }
  BlasRate rate;
  rate.gflops = flops / seconds * 1e-9;
  std::string version = config != nullptr ? config() : "OpenBLAS";
  version = version.substr(0, version.find(' ', version.find(' ') + 1));  // "OpenBLAS 0.3.21"
  rate.library = version + " (" + (corename != nullptr ? corename() : "?") + " kernels, " + std::to_string(threads) +
                 " threads)";
  return rate;
}

}  // namespace tidal
