// The Backend op set on the host CPU: AVX-512, AVX2 or scalar kernels,
// chosen at compile time (cpu/simd.h), parallel on a ThreadPool.
#pragma once

#include <vector>

#include "core/thread_pool.h"
#include "cpu/attention.h"
#include "cpu/elementwise.h"
#include "cpu/scratch.h"
#include "model/backend.h"

namespace tidal {

// Not thread-safe: one caller at a time (the engine loop), which the pool
// requires anyway.
class CpuBackend : public Backend {
 public:
  explicit CpuBackend(ThreadPool& pool);

  void matmul(const Weight& w, const float* x, int n_tokens, float* y) override;
  void embed(const Weight& table, const int32_t* ids, int n_tokens, float* out) override;
  void rmsnorm(const float* x, const float* gamma, int n_tokens, int dim, float eps, float* out) override;
  void rope(float* x, const int32_t* positions, int n_tokens, int n_heads, int head_dim, float theta) override;
  void silu_mul(float* gate, const float* up, int64_t n) override;
  void add(float* x, const float* y, int64_t n) override;
  void hadamard(float* x, int64_t n_rows, int width, int block) override;
  void kv_write(KvCache& cache, int layer, const float* k, const float* v, const AttentionMeta& meta) override;
  void attention(const KvCache& cache, int layer, const float* q, const AttentionMeta& meta, int n_heads,
                 float* out) override;

 private:
  // Runs fn(begin, end) over [0, n): split across the pool when the op
  // touches enough floats to pay for waking it, else on the calling thread.
  template <typename Fn>
  void for_range(int64_t n, int64_t floats, Fn&& fn);

  ThreadPool& pool_;
  std::vector<cpu::ScratchBuffer> scratch_;  // one per pool thread
  cpu::ScratchBuffer int8_activations_;      // a matmul's activations, quantized for integer weights
  cpu::AttentionWorkspace attention_workspace_;
  cpu::RopeTable rope_table_;
};

}  // namespace tidal
