// The KV pool: for every layer, `num_blocks` blocks of `block_size` token
// slots for K and for V. Layout per layer is [block][kv_head][slot][head_dim]
// so one head's keys within a block are contiguous for attention.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tidal {

struct KvCacheShape {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  int num_blocks = 0;

  size_t floats_per_block() const { return size_t(n_kv_heads) * block_size * head_dim; }
  // Bytes of K+V for one token across all layers.
  size_t bytes_per_token() const { return size_t(2) * n_layers * n_kv_heads * head_dim * sizeof(float); }
};

class KvCache {
 public:
  explicit KvCache(const KvCacheShape& shape);
  const KvCacheShape& shape() const { return shape_; }

  // Start of head `kv_head`'s [block_size][head_dim] keys/values in `block`.
  float* key(int layer, int block, int kv_head) { return k_[layer].data() + offset(block, kv_head); }
  float* value(int layer, int block, int kv_head) { return v_[layer].data() + offset(block, kv_head); }
  const float* key(int layer, int block, int kv_head) const { return k_[layer].data() + offset(block, kv_head); }
  const float* value(int layer, int block, int kv_head) const { return v_[layer].data() + offset(block, kv_head); }

  // Copies every layer's K and V of block `src` into block `dst` (copy-on-write).
  void copy_block(int src, int dst);

 private:
  size_t offset(int block, int kv_head) const {
    return size_t(block) * shape_.floats_per_block() + size_t(kv_head) * shape_.block_size * shape_.head_dim;
  }
  KvCacheShape shape_;
  std::vector<std::vector<float>> k_, v_;
};

}  // namespace tidal
