#include "cuda/cuda_kv_cache.h"

#include <algorithm>
#include <string>

#include "core/error.h"
#include "cuda/cuda_check.h"

namespace tidal::cuda {

namespace {

std::vector<float> download(const float* device, size_t n) {
  std::vector<float> host(n);
  check(cudaMemcpy(host.data(), device, n * sizeof(float), cudaMemcpyDeviceToHost), "download KV");
  return host;
}

// The device kernels read and write F32 only; an F16 pool must fail here
// rather than be silently allocated (and sized) as F32.
const KvCacheShape& f32_only(const KvCacheShape& shape) {
  if (shape.dtype != DType::F32) {
    throw Error(ErrorCode::kUnsupported, "the CUDA KV cache supports --kv-cache-dtype f32 only, not " +
                                             std::string(dtype_name(shape.dtype)));
  }
  return shape;
}

}  // namespace

CudaKvCache::CudaKvCache(const KvCacheShape& shape)
    : shape_(f32_only(shape)),
      k_(size_t(shape.n_layers) * size_t(shape.num_blocks) * shape.floats_per_block() * sizeof(float)),
      v_(k_.bytes()) {
  check(cudaMemset(k_.data(), 0, k_.bytes()), "zero K cache");
  check(cudaMemset(v_.data(), 0, v_.bytes()), "zero V cache");
}

int CudaKvCache::blocks_for_free_memory(const KvCacheShape& shape, double fraction, size_t reserve_bytes) {
  size_t free_bytes = 0, total_bytes = 0;
  check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  if (free_bytes <= reserve_bytes) return 0;
  const double usable = double(free_bytes - reserve_bytes) * std::clamp(fraction, 0.0, 1.0);
  const double per_block = double(f32_only(shape).bytes_per_token()) * shape.block_size;
  return int(std::min(usable / per_block, 2e9));
}

void CudaKvCache::copy_block(int src, int dst, cudaStream_t stream) {
  const size_t block = shape_.floats_per_block();
  for (int l = 0; l < shape_.n_layers; ++l) {
    check(cudaMemcpyAsync(keys(l) + size_t(dst) * block, keys(l) + size_t(src) * block, block * sizeof(float),
                          cudaMemcpyDeviceToDevice, stream),
          "copy K block");
    check(cudaMemcpyAsync(values(l) + size_t(dst) * block, values(l) + size_t(src) * block, block * sizeof(float),
                          cudaMemcpyDeviceToDevice, stream),
          "copy V block");
  }
}

std::vector<float> CudaKvCache::download_keys(int layer) const { return download(keys(layer), floats_per_layer()); }
std::vector<float> CudaKvCache::download_values(int layer) const {
  return download(values(layer), floats_per_layer());
}

}  // namespace tidal::cuda
