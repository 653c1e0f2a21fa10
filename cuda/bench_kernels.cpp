// Kernel benchmark for the CUDA backend (run by bench/gpu.sh): measures the
// device's ceilings — device-to-device copy bandwidth and a large cuBLAS
// GEMM — then every kernel at the shapes of one Llama-3-8B layer (hidden
// 4096, 32 heads over 8 KV heads, head_dim 128, FFN 14336) for batch 1, 8
// and 64 and context 512 and 4096, and prints one Markdown table with each
// kernel's achieved bandwidth or FLOP/s as a share of the matching ceiling.
// Inputs are random bits: the kernels' speed does not depend on values.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <curand.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_sampler.h"
#include "cuda/device_info.h"

namespace tidal::cuda {
namespace {

constexpr int kHidden = 4096, kHeads = 32, kKvHeads = 8, kHeadDim = 128, kFfn = 14336, kVocab = 128256;

void check_curand(curandStatus_t status) {
  if (status != CURAND_STATUS_SUCCESS) throw Error(ErrorCode::kInternal, "curand: " + std::to_string(int(status)));
}

class Random {
 public:
  Random() {
    check_curand(curandCreateGenerator(&gen_, CURAND_RNG_PSEUDO_DEFAULT));
    check_curand(curandSetPseudoRandomGeneratorSeed(gen_, 1234));
  }
  ~Random() { curandDestroyGenerator(gen_); }
  // Uniform floats in (0, 1].
  DeviceBuffer floats(size_t n) {
    DeviceBuffer b(n * sizeof(float));
    check_curand(curandGenerateUniform(gen_, b.as<float>(), n));
    return b;
  }
  DeviceBuffer bytes(size_t n) {
    DeviceBuffer b((n + 3) / 4 * 4);
    check_curand(curandGenerate(gen_, b.as<unsigned>(), b.bytes() / 4));
    return b;
  }

 private:
  curandGenerator_t gen_;
};

// Mean seconds per call of fn on `stream`, after a warm-up call.
double time_it(cudaStream_t stream, const std::function<void()>& fn, int min_iters = 5, double min_seconds = 0.2) {
  fn();
  check(cudaStreamSynchronize(stream), "warm-up");
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  int iters = 0;
  float ms = 0.0f;
  const auto wall = std::chrono::steady_clock::now();
  check(cudaEventRecord(start, stream), "record");
  do {
    fn();
    ++iters;
  } while (iters < min_iters ||
           std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count() < min_seconds);
  check(cudaEventRecord(stop, stream), "record");
  check(cudaEventSynchronize(stop), "sync");
  check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms * 1e-3 / iters;
}

struct Ceilings {
  double copy_bytes_per_s = 0;  // read + write
  double gemm_flops = 0;        // cuBLAS FP16 in, FP32 accumulate
};

void row(const std::string& kernel, const std::string& shape, double seconds, double bytes, double flops,
         const Ceilings& c) {
  std::string bw = "", fl = "";
  char buf[128];
  if (bytes > 0) {
    std::snprintf(buf, sizeof buf, "%.0f GB/s | %.0f%%", bytes / seconds * 1e-9, 100 * bytes / seconds / c.copy_bytes_per_s);
    bw = buf;
  } else {
    bw = " | ";
  }
  if (flops > 0) {
    std::snprintf(buf, sizeof buf, "%.1f TFLOP/s | %.0f%%", flops / seconds * 1e-12, 100 * flops / seconds / c.gemm_flops);
    fl = buf;
  } else {
    fl = " | ";
  }
  std::printf("| %s | %s | %.1f | %s | %s |\n", kernel.c_str(), shape.c_str(), seconds * 1e6, bw.c_str(), fl.c_str());
}

Ceilings measure_ceilings(cudaStream_t stream) {
  Ceilings c;
  const size_t bytes = size_t(1) << 30;
  DeviceBuffer a(bytes), b(bytes);
  const double copy = time_it(stream, [&] {
    check(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, stream), "copy");
  });
  c.copy_bytes_per_s = 2.0 * double(bytes) / copy;

  const int n = 8192;
  DeviceBuffer x(size_t(n) * n * 2), w(size_t(n) * n * 2), y(size_t(n) * n * 4);
  check(cudaMemset(x.data(), 0, x.bytes()), "memset");
  check(cudaMemset(w.data(), 0, w.bytes()), "memset");
  cublasHandle_t handle;
  check(cublasCreate(&handle), "cublasCreate");
  check(cublasSetStream(handle, stream), "cublasSetStream");
  const float one = 1.0f, zero = 0.0f;
  const double gemm = time_it(stream, [&] {
    check(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, w.data(), CUDA_R_16F, n, x.data(), CUDA_R_16F, n,
                       &zero, y.data(), CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "gemm");
  });
  cublasDestroy(handle);
  c.gemm_flops = 2.0 * n * double(n) * n / gemm;
  std::printf("| ceiling | device-to-device copy, 1 GiB (read + write) | %.1f | %.0f GB/s | 100%% | | |\n", copy * 1e6,
              c.copy_bytes_per_s * 1e-9);
  std::printf("| ceiling | cuBLAS GEMM F16 in, F32 accumulate, 8192^3 | %.1f | | | %.1f TFLOP/s | 100%% |\n", gemm * 1e6,
              c.gemm_flops * 1e-12);
  return c;
}

// The seven matrices of one layer, in one weight type.
struct Layer {
  std::vector<DeviceBuffer> storage;
  std::vector<Weight> weights;
  double bytes = 0, params = 0;

  Layer(DType type, Random& random) {
    const int64_t shapes[7][2] = {{kHeads * kHeadDim, kHidden}, {kKvHeads * kHeadDim, kHidden},
                                  {kKvHeads * kHeadDim, kHidden}, {kHidden, kHeads * kHeadDim},
                                  {kFfn, kHidden},               {kFfn, kHidden},
                                  {kHidden, kFfn}};
    for (const auto& s : shapes) {
      Weight w{type, s[0], s[1], nullptr};
      storage.push_back(random.bytes(w.bytes()));
      w.data = storage.back().as<uint8_t>();
      weights.push_back(w);
      bytes += double(w.bytes());
      params += double(s[0]) * double(s[1]);
    }
  }
};

void bench_matmuls(CudaBackend& gpu, Random& random, const Ceilings& c) {
  DeviceBuffer x = random.floats(size_t(4096) * kFfn), y(size_t(4096) * kFfn * sizeof(float));
  for (DType type : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    const Layer layer(type, random);
    for (int batch : {1, 8, 64}) {
      const double s = time_it(gpu.stream(), [&] {
        for (const Weight& w : layer.weights) gpu.matmul(w, x.as<float>(), batch, y.as<float>());
      });
      double io = 0;
      for (const Weight& w : layer.weights) io += 4.0 * batch * double(w.rows + w.cols);
      row("matmul_rows " + std::string(dtype_name(type)), "layer's 7 matrices, batch " + std::to_string(batch), s,
          layer.bytes + io, 2.0 * batch * layer.params, c);
    }
  }
}

void bench_prefill_gemm(Random& random, const Ceilings& c) {
  DeviceBuffer x = random.floats(size_t(4096) * kFfn), y(size_t(4096) * kFfn * sizeof(float));
  CudaBackend own, tensor({.tensor_core_min_tokens = 1});
  for (DType type : {DType::F16, DType::Q4_0}) {
    const Layer layer(type, random);
    for (int tokens : {64, 512, 4096}) {
      for (CudaBackend* b : {&tensor, &own}) {
        if (b == &own && tokens == 4096) continue;  // minutes of FP32 FMAs; 512 shows the rate
        const double s = time_it(b->stream(), [&] {
          for (const Weight& w : layer.weights) b->matmul(w, x.as<float>(), tokens, y.as<float>());
        }, 2, 0.1);
        row(std::string(b == &tensor ? "cuBLAS tensor-core path " : "matmul_rows (FP32 FMA) ") +
                std::string(dtype_name(type)),
            "layer's 7 matrices, " + std::to_string(tokens) + " tokens", s, 0, 2.0 * tokens * layer.params, c);
      }
    }
  }
}

// Decode: `batch` sequences, one query each at position context - 1.
// Prefill: one sequence of `context` tokens.
void bench_attention(CudaBackend& gpu, Random& random, const Ceilings& c) {
  for (int context : {512, 4096}) {
    for (int batch : {1, 8, 64}) {
      const int blocks_per_seq = context / 16;
      KvCacheShape shape{1, kKvHeads, kHeadDim, 16, batch * blocks_per_seq};
      CudaKvCache cache(shape);
      std::vector<std::vector<int32_t>> tables(static_cast<size_t>(batch));
      std::vector<int32_t> positions, seqs, slots;
      for (int s = 0; s < batch; ++s) {
        for (int b = 0; b < blocks_per_seq; ++b) tables[size_t(s)].push_back(s * blocks_per_seq + b);
        positions.push_back(context - 1);
        seqs.push_back(s);
        slots.push_back(tables[size_t(s)].back() * 16 + 15);
      }
      AttentionMeta meta;
      meta.n_tokens = batch;
      meta.positions = positions.data();
      meta.seq_index = seqs.data();
      meta.slot_mapping = slots.data();
      for (const auto& t : tables) meta.block_tables.emplace_back(t);
      DeviceBuffer q = random.floats(size_t(batch) * kHeads * kHeadDim), out(q.bytes());
      const double s = time_it(gpu.stream(), [&] { gpu.attention(cache, 0, q.as<float>(), meta, kHeads, out.as<float>()); });
      const double kv = 2.0 * batch * double(context) * kKvHeads * kHeadDim * sizeof(float);
      const double flops = 4.0 * batch * double(context) * kHeads * kHeadDim;
      row("attention decode", "batch " + std::to_string(batch) + ", context " + std::to_string(context), s, kv, flops, c);
    }
    // Prefill of one sequence.
    const int blocks = context / 16;
    KvCacheShape shape{1, kKvHeads, kHeadDim, 16, blocks};
    CudaKvCache cache(shape);
    std::vector<int32_t> table(static_cast<size_t>(blocks)), positions, seqs, slots;
    for (int b = 0; b < blocks; ++b) table[size_t(b)] = b;
    for (int p = 0; p < context; ++p) positions.push_back(p), seqs.push_back(0), slots.push_back(p);
    AttentionMeta meta;
    meta.n_tokens = context;
    meta.positions = positions.data();
    meta.seq_index = seqs.data();
    meta.slot_mapping = slots.data();
    meta.block_tables.emplace_back(table);
    DeviceBuffer q = random.floats(size_t(context) * kHeads * kHeadDim), out(q.bytes());
    const double s = time_it(gpu.stream(), [&] { gpu.attention(cache, 0, q.as<float>(), meta, kHeads, out.as<float>()); },
                             2, 0.1);
    const double flops = 4.0 * kHeads * kHeadDim * (double(context) * (context + 1) / 2);
    row("attention prefill (causal)", std::to_string(context) + " tokens", s, 0, flops, c);
  }
}

void bench_elementwise(CudaBackend& gpu, Random& random, const Ceilings& c) {
  for (int n : {1, 64, 4096}) {
    const std::string shape = std::to_string(n) + " tokens";
    DeviceBuffer x = random.floats(size_t(n) * kFfn), y = random.floats(size_t(n) * kFfn), g = random.floats(kHidden);
    const double hidden = double(n) * kHidden * 4, ffn = double(n) * kFfn * 4;
    row("rmsnorm", shape + " x 4096", time_it(gpu.stream(), [&] {
          gpu.rmsnorm(x.as<float>(), g.as<float>(), n, kHidden, 1e-5f, y.as<float>());
        }), 2 * hidden, 0, c);
    std::vector<int32_t> positions(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) positions[size_t(i)] = 1000 + i;
    row("rope (q)", shape + " x 32 heads", time_it(gpu.stream(), [&] {
          gpu.rope(x.as<float>(), positions.data(), n, kHeads, kHeadDim, 500000.0f);
        }), 2 * hidden, 0, c);
    row("silu_mul", shape + " x 14336", time_it(gpu.stream(), [&] {
          gpu.silu_mul(x.as<float>(), y.as<float>(), int64_t(n) * kFfn);
        }), 3 * ffn, 0, c);
    row("add", shape + " x 4096", time_it(gpu.stream(), [&] { gpu.add(x.as<float>(), y.as<float>(), int64_t(n) * kHidden); }),
        3 * hidden, 0, c);
  }
}

void bench_sampling(CudaBackend& gpu, Random& random, const Ceilings& c) {
  CudaSampler sampler(gpu.stream());
  for (int batch : {1, 64}) {
    DeviceBuffer logits = random.floats(size_t(batch) * kVocab);
    std::vector<SamplingParams> params(static_cast<size_t>(batch));
    for (SamplingParams& p : params) p.temperature = 0.8f, p.top_p = 0.9f, p.top_k = 0;
    std::vector<uint64_t> seeds(static_cast<size_t>(batch), 1), steps(static_cast<size_t>(batch), 0);
    const double s = time_it(gpu.stream(), [&] { sampler.sample(logits.as<float>(), kVocab, params, seeds, steps); }, 3, 0.1);
    row("sample (T 0.8, top_p 0.9)", "batch " + std::to_string(batch) + ", vocab 128256", s,
        double(batch) * kVocab * 4, 0, c);
  }
}

int run() {
  if (device_count() == 0) {
    std::fprintf(stderr, "tidal_cuda_bench: no CUDA device\n");
    return 1;
  }
  const DeviceInfo info = current_device_info();
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  std::printf("Device: %s (sm_%d, %d SMs, %.0f GiB), %s\n\n", info.name.c_str(), info.compute_capability, info.sm_count,
              double(info.total_bytes) / (1 << 30), date);
  std::printf("| kernel | shape | time (us) | bandwidth | %% of copy | compute | %% of cuBLAS |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|\n");
  CudaBackend gpu;
  Random random;
  const Ceilings c = measure_ceilings(gpu.stream());
  bench_matmuls(gpu, random, c);
  bench_prefill_gemm(random, c);
  bench_attention(gpu, random, c);
  bench_elementwise(gpu, random, c);
  bench_sampling(gpu, random, c);
  return 0;
}

}  // namespace
}  // namespace tidal::cuda

int main() {
  try {
    return tidal::cuda::run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tidal_cuda_bench: %s\n", e.what());
    return 1;
  }
}
