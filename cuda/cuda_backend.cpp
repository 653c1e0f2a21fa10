#include "cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/fwht.h"
#include "cuda/attention_kernels.h"
#include "cuda/cuda_check.h"
#include "cuda/device_info.h"
#include "cuda/elementwise_kernels.h"
#include "cuda/matmul_kernels.h"

namespace tidal::cuda {

namespace {

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

CudaBackend::CudaBackend(const CudaBackendOptions& options) : options_(options) {
  if (device_count() == 0) throw Error(ErrorCode::kUnsupported, "no CUDA device");
  sm_count_ = current_device_info().sm_count;
  // A blocking stream: it waits for, and is waited on by, synchronous
  // cudaMemcpy on the legacy default stream, so callers' copies stay ordered.
  check(cudaStreamCreate(&stream_), "cudaStreamCreate");
}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(stream_);  // queued kernels still read the scratch buffers freed below
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  cudaStreamDestroy(stream_);
}

void CudaBackend::synchronize() { check(cudaStreamSynchronize(stream_), "CUDA stream"); }

void CudaBackend::matmul(const Weight& w, const float* x, int n_tokens, float* y) {
  if (n_tokens <= 0) return;
  const bool tensor_cores = options_.tensor_core_min_tokens > 0 && n_tokens >= options_.tensor_core_min_tokens &&
                            w.type != DType::F32;
  if (tensor_cores) {
    tensor_core_matmul(w, x, n_tokens, y);
  } else {
    matmul_rows(w, x, n_tokens, y, stream_);
  }
}

void CudaBackend::tensor_core_matmul(const Weight& w, const float* x, int n_tokens, float* y) {
  if (cublas_ == nullptr) {
    check(cublasCreate(&cublas_), "cublasCreate");
    check(cublasSetStream(cublas_, stream_), "cublasSetStream");
  }
  const bool bf16 = w.type == DType::BF16;
  const size_t x_values = size_t(n_tokens) * size_t(w.cols);
  half_x_.reserve(x_values * 2);
  convert_to_half(x, int64_t(x_values), bf16, half_x_.data(), stream_);
  const void* weights = w.data;
  if (w.type != DType::F16 && w.type != DType::BF16) {
    half_w_.reserve(size_t(w.rows) * size_t(w.cols) * 2);
    dequantize_to_f16(w, half_w_.data(), stream_);
    weights = half_w_.data();
  }
  // Row-major y[n][rows] is column-major Y (rows x n) = W (rows x cols) * X^T,
  // where row-major W is column-major W^T (ld = cols) and row-major x is
  // column-major X^T (ld = cols).
  const cudaDataType type = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  const float one = 1.0f, zero = 0.0f;
  check(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(w.rows), n_tokens, int(w.cols), &one, weights, type,
                     int(w.cols), half_x_.data(), type, int(w.cols), &zero, y, CUDA_R_32F, int(w.rows),
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
}

void CudaBackend::embed(const Weight& table, const int32_t* ids, int n_tokens, float* out) {
  if (n_tokens <= 0) return;
  for (int t = 0; t < n_tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= table.rows) {
      invalid("token id " + std::to_string(ids[t]) + " outside vocabulary of " + std::to_string(table.rows));
    }
  }
  const int32_t* device_ids = uploads_.upload({ids, size_t(n_tokens)}, stream_);
  cuda::embed(table, device_ids, n_tokens, out, stream_);
}

void CudaBackend::rmsnorm(const float* x, const float* gamma, int n_tokens, int dim, float eps, float* out) {
  cuda::rmsnorm(x, gamma, n_tokens, dim, eps, out, stream_);
}

void CudaBackend::rope(float* x, const int32_t* positions, int n_tokens, int n_heads, int head_dim, float theta) {
  if (n_tokens <= 0) return;
  if (*std::min_element(positions, positions + n_tokens) < 0) invalid("rope: negative position");
  const int32_t* device_positions = uploads_.upload({positions, size_t(n_tokens)}, stream_);
  cuda::rope(x, device_positions, n_tokens, n_heads, head_dim, theta, stream_);
}

void CudaBackend::silu_mul(float* gate, const float* up, int64_t n) { cuda::silu_mul(gate, up, n, stream_); }

void CudaBackend::add(float* x, const float* y, int64_t n) { cuda::add(x, y, n, stream_); }

void CudaBackend::hadamard(float* x, int64_t n_rows, int width, int block) {
  if (!is_hadamard_block(block, width)) {
    throw Error(ErrorCode::kInvalidArgument, "hadamard: block " + std::to_string(block) +
                                                 " is not a power of two dividing " + std::to_string(width));
  }
  cuda::hadamard(x, n_rows, width, block, stream_);
}

void CudaBackend::kv_write(KvCache&, int, const float*, const float*, const AttentionMeta&) {
  throw Error(ErrorCode::kUnsupported, "CudaBackend::kv_write needs a CudaKvCache, not a host KvCache");
}

void CudaBackend::attention(const KvCache&, int, const float*, const AttentionMeta&, int, float*) {
  throw Error(ErrorCode::kUnsupported, "CudaBackend::attention needs a CudaKvCache, not a host KvCache");
}

void CudaBackend::kv_write(CudaKvCache& cache, int layer, const float* k, const float* v, const AttentionMeta& meta) {
  if (meta.n_tokens <= 0) return;
  const KvCacheShape& s = cache.shape();
  for (int t = 0; t < meta.n_tokens; ++t) {
    const int32_t slot = meta.slot_mapping[t];
    if (slot < 0 || slot / s.block_size >= s.num_blocks) {
      invalid("kv_write: slot " + std::to_string(slot) + " outside the cache");
    }
  }
  const int32_t* slots = uploads_.upload({meta.slot_mapping, size_t(meta.n_tokens)}, stream_);
  cuda::kv_write(cache.keys(layer), cache.values(layer), k, v, slots, meta.n_tokens, s.n_kv_heads, s.head_dim,
                 s.block_size, stream_);
}

void CudaBackend::attention(const CudaKvCache& cache, int layer, const float* q, const AttentionMeta& meta,
                            int n_heads, float* out) {
  if (meta.n_tokens <= 0) return;
  if (!aligned16(q) || !aligned16(out)) invalid("attention: q and out must be 16-byte aligned");
  const KvCacheShape& s = cache.shape();
  const AttentionPlan plan =
      plan_attention(meta, s, n_heads, options_.attention_split, sm_count_, options_.max_attention_partial_bytes);
  const int32_t* packed = uploads_.upload(plan.packed, stream_);

  AttentionArgs a;
  a.keys = cache.keys(layer);
  a.values = cache.values(layer);
  a.n_kv_heads = s.n_kv_heads;
  a.head_dim = s.head_dim;
  a.block_size = s.block_size;
  a.tables = packed;
  a.table_stride = plan.table_stride;
  a.positions = packed + plan.positions_at;
  a.items = reinterpret_cast<const AttentionItem*>(packed + plan.items_at);
  a.n_items = plan.n_items;
  a.q = q;
  a.out = out;
  a.n_tokens = meta.n_tokens;
  a.n_heads = n_heads;
  a.group = plan.group;
  a.queries_per_item = plan.queries_per_item;
  a.scale = 1.0f / std::sqrt(float(s.head_dim));
  a.split = plan.split;
  if (plan.split) {
    partials_.reserve(attention_partial_floats(plan, n_heads, s.head_dim) * sizeof(float));
    a.partials = partials_.as<float>();
    a.partial_offsets = packed + plan.partial_offsets_at;
  }
  cuda::attention(a, stream_);
}

void CudaBackend::gather_rows(const float* x, const int32_t* rows, int n_rows, int dim, float* out) {
  for (int i = 0; i < n_rows; ++i) {
    check(cudaMemcpyAsync(out + size_t(i) * dim, x + size_t(rows[i]) * dim, sizeof(float) * size_t(dim),
                          cudaMemcpyDeviceToDevice, stream_),
          "gather_rows");
  }
}

}  // namespace tidal::cuda
