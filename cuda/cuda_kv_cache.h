// The paged KV pool in device memory, with the host KvCache's layout: per
// layer [block][kv_head][slot][head_dim] F32 for K and for V, so block ids,
// slot mappings and block tables mean the same thing on both backends.
#pragma once

#include <cuda_runtime_api.h>

#include <vector>

#include "cuda/device_buffer.h"
#include "kv/kv_cache.h"

namespace tidal::cuda {

class CudaKvCache {
 public:
  // Zeroed, so attention over an allocated but unwritten slot reads finite
  // values. Throws Error(kUnsupported) unless shape.dtype is F32.
  explicit CudaKvCache(const KvCacheShape& shape);

  // How many blocks of `shape` (num_blocks ignored) fit in `fraction` of the
  // device memory that is free now, after keeping `reserve_bytes` free.
  static int blocks_for_free_memory(const KvCacheShape& shape, double fraction, size_t reserve_bytes);

  const KvCacheShape& shape() const { return shape_; }
  size_t floats_per_layer() const { return size_t(shape_.num_blocks) * shape_.floats_per_block(); }

  // Device pointers to a layer's whole K or V pool.
  float* keys(int layer) { return k_.as<float>() + size_t(layer) * floats_per_layer(); }
  float* values(int layer) { return v_.as<float>() + size_t(layer) * floats_per_layer(); }
  const float* keys(int layer) const { return k_.as<float>() + size_t(layer) * floats_per_layer(); }
  const float* values(int layer) const { return v_.as<float>() + size_t(layer) * floats_per_layer(); }

  // Copies every layer's K and V of block `src` into block `dst` (copy-on-write), on `stream`.
  void copy_block(int src, int dst, cudaStream_t stream);

  // A layer's K or V pool on the host, for tests and debugging (synchronous).
  std::vector<float> download_keys(int layer) const;
  std::vector<float> download_values(int layer) const;

 private:
  KvCacheShape shape_;
  DeviceBuffer k_, v_;  // [layer][block][kv_head][slot][head_dim]
};

}  // namespace tidal::cuda
