// The Backend op set on an NVIDIA GPU.
//
// Memory contract: every float* an op takes or writes (activations, norm
// weights, outputs) and every Weight's data is DEVICE memory — weights come
// from upload_model / upload_weight (cuda/device_model.h), which also puts
// them in the device layout of cuda/device_layout.h. Integer metadata stays
// on the HOST, as the scheduler produces it: embed's ids, rope's positions
// and the AttentionMeta arrays and block tables; the backend copies them
// over, once per distinct content (cuda/index_upload.h), i.e. once per step
// rather than once per layer. float* inputs must be 16-byte aligned where
// attention reads them (q, out), which every cudaMalloc'd buffer is.
//
// The KV cache is a CudaKvCache (device pool, same layout as KvCache). The
// Backend overloads taking the host KvCache throw kUnsupported: a host cache
// cannot be read by kernels (see docs/CUDA.md for the interface change that
// would let LlamaForward drive this backend unchanged).
//
// Every op is batch-invariant, as Backend requires — unless
// tensor_core_min_tokens is set, see below. All work is queued on one
// stream; ops return before the GPU finishes.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "cuda/attention_plan.h"
#include "cuda/cuda_kv_cache.h"
#include "cuda/device_buffer.h"
#include "cuda/index_upload.h"
#include "model/backend.h"

namespace tidal::cuda {

struct CudaBackendOptions {
  // Batches of at least this many tokens multiply F16, BF16 and quantized
  // weights with cuBLAS on tensor cores: activations are rounded to F16/BF16
  // and quantized weights are expanded to F16 first. Much faster prefill,
  // but a token's result then depends on the batch it ran in (cuBLAS picks
  // its algorithm by shape), so batch invariance is lost. 0 = never.
  int tensor_core_min_tokens = 0;
  // How attention is cut into blocks (speed only; results are the same bits).
  AttentionSplit attention_split = AttentionSplit::kAuto;
  // Largest scratch the split (flash-decoding) path may use.
  size_t max_attention_partial_bytes = size_t(256) << 20;
};

class CudaBackend : public Backend {
 public:
  explicit CudaBackend(const CudaBackendOptions& options = {});
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  cudaStream_t stream() const { return stream_; }
  // Waits for all queued work; rethrows an asynchronous kernel fault.
  void synchronize();

  void matmul(const Weight& w, const float* x, int n_tokens, float* y) override;
  void embed(const Weight& table, const int32_t* ids, int n_tokens, float* out) override;
  void rmsnorm(const float* x, const float* gamma, int n_tokens, int dim, float eps, float* out) override;
  void rope(float* x, const int32_t* positions, int n_tokens, int n_heads, int head_dim, float theta) override;
  void silu_mul(float* gate, const float* up, int64_t n) override;
  void add(float* x, const float* y, int64_t n) override;
  void hadamard(float* x, int64_t n_rows, int width, int block) override;

  // The host-cache overloads cannot run on the device; they throw kUnsupported.
  void kv_write(KvCache& cache, int layer, const float* k, const float* v, const AttentionMeta& meta) override;
  void attention(const KvCache& cache, int layer, const float* q, const AttentionMeta& meta, int n_heads,
                 float* out) override;

  void kv_write(CudaKvCache& cache, int layer, const float* k, const float* v, const AttentionMeta& meta);
  void attention(const CudaKvCache& cache, int layer, const float* q, const AttentionMeta& meta, int n_heads,
                 float* out);

  // out[i] = x[rows[i]] for rows of `dim` floats (rows on the host): picks
  // the rows that need logits.
  void gather_rows(const float* x, const int32_t* rows, int n_rows, int dim, float* out);

 private:
  void tensor_core_matmul(const Weight& w, const float* x, int n_tokens, float* y);

  CudaBackendOptions options_;
  int sm_count_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;  // created on first tensor-core matmul
  IndexUploader uploads_;
  DeviceBuffer partials_;     // split attention scratch
  DeviceBuffer half_x_;       // tensor-core path: activations as F16/BF16
  DeviceBuffer half_w_;       // tensor-core path: a quantized matrix as F16
};

}  // namespace tidal::cuda
