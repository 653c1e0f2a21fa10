#include "kv/kv_cache.h"

#include <algorithm>

namespace tidal {

KvCache::KvCache(const KvCacheShape& shape) : shape_(shape) {
  const size_t floats = size_t(shape.num_blocks) * shape.floats_per_block();
  // Zeroed so attention over a block that was allocated but not yet fully
  // written reads finite values.
  k_.assign(size_t(shape.n_layers), std::vector<float>(floats, 0.0f));
  v_.assign(size_t(shape.n_layers), std::vector<float>(floats, 0.0f));
}

void KvCache::copy_block(int src, int dst) {
  const size_t n = shape_.floats_per_block();
  for (int l = 0; l < shape_.n_layers; ++l) {
    std::copy_n(k_[l].data() + size_t(src) * n, n, k_[l].data() + size_t(dst) * n);
    std::copy_n(v_[l].data() + size_t(src) * n, n, v_[l].data() + size_t(dst) * n);
  }
}

}  // namespace tidal
