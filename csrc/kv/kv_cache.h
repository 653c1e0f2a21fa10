// The KV pool: for every layer, `num_blocks` blocks of `block_size` token
// slots for K and for V. Layout per layer is [block][kv_head][slot][head_dim]
// so one head's keys within a block are contiguous for attention.
//
// Elements are F32 (the reference) or F16 (IEEE half bits, like vLLM's
// --kv-cache-dtype): F16 halves the bytes per token, so the same memory
// holds twice the blocks, at the cost of rounding K and V to 11 significant
// bits when they are written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/aligned_vector.h"

#include "core/dtype.h"

namespace tidal {

struct KvCacheShape {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  int num_blocks = 0;
  DType dtype = DType::F32;  // F32 or F16

  // Elements per block: floats in an F32 cache, halves in an F16 one.
  size_t floats_per_block() const { return size_t(n_kv_heads) * block_size * head_dim; }
  size_t element_bytes() const { return size_t(dtype_block_bytes(dtype)); }
  // Bytes of K+V for one token across all layers.
  size_t bytes_per_token() const { return size_t(2) * n_layers * n_kv_heads * head_dim * element_bytes(); }
};

// Throws Error(kInvalidArgument) unless `dtype` is one a KV cache can hold.
void check_kv_cache_dtype(DType dtype);

class KvCache {
 public:
  // Throws Error(kInvalidArgument) for a dtype other than F32 or F16.
  explicit KvCache(const KvCacheShape& shape);
  const KvCacheShape& shape() const { return shape_; }

  // Start of head `kv_head`'s [block_size][head_dim] keys/values in `block`.
  // F32 caches only.
  float* key(int layer, int block, int kv_head) { return k_[layer].data() + offset(block, kv_head); }
  float* value(int layer, int block, int kv_head) { return v_[layer].data() + offset(block, kv_head); }
  const float* key(int layer, int block, int kv_head) const { return k_[layer].data() + offset(block, kv_head); }
  const float* value(int layer, int block, int kv_head) const { return v_[layer].data() + offset(block, kv_head); }

  // The same for F16 caches: IEEE half bits.
  uint16_t* key_f16(int layer, int block, int kv_head) { return k16_[layer].data() + offset(block, kv_head); }
  uint16_t* value_f16(int layer, int block, int kv_head) { return v16_[layer].data() + offset(block, kv_head); }
  const uint16_t* key_f16(int layer, int block, int kv_head) const {
    return k16_[layer].data() + offset(block, kv_head);
  }
  const uint16_t* value_f16(int layer, int block, int kv_head) const {
    return v16_[layer].data() + offset(block, kv_head);
  }

  // Copies every layer's K and V of block `src` into block `dst` (copy-on-write).
  void copy_block(int src, int dst);

 private:
  size_t offset(int block, int kv_head) const {
    return size_t(block) * shape_.floats_per_block() + size_t(kv_head) * shape_.block_size * shape_.head_dim;
  }
  KvCacheShape shape_;
  // Per layer; only the pair matching shape_.dtype holds anything.
  std::vector<AlignedVector<float>> k_, v_;
  std::vector<AlignedVector<uint16_t>> k16_, v16_;
};

}  // namespace tidal
