#include "kv/kv_cache.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace tidal {

namespace {

template <typename T>
void copy_layers(std::vector<AlignedVector<T>>& pools, size_t block_elements, int src, int dst) {
  for (AlignedVector<T>& pool : pools) {
    std::copy_n(pool.data() + size_t(src) * block_elements, block_elements, pool.data() + size_t(dst) * block_elements);
  }
}

}  // namespace

void check_kv_cache_dtype(DType dtype) {
  if (dtype != DType::F32 && dtype != DType::F16) {
    throw Error(ErrorCode::kInvalidArgument,
                "KV cache dtype " + std::string(dtype_name(dtype)) + " is not supported (f32 or f16)");
  }
}

KvCache::KvCache(const KvCacheShape& shape) : shape_(shape) {
  check_kv_cache_dtype(shape.dtype);
  const size_t elements = size_t(shape.num_blocks) * shape.floats_per_block();
  // Zeroed so attention over a block that was allocated but not yet fully
  // written reads finite values (half 0x0000 is +0 too).
  if (shape.dtype == DType::F16) {
    k16_.assign(size_t(shape.n_layers), AlignedVector<uint16_t>(elements, 0));
    v16_.assign(size_t(shape.n_layers), AlignedVector<uint16_t>(elements, 0));
  } else {
    k_.assign(size_t(shape.n_layers), AlignedVector<float>(elements, 0.0f));
    v_.assign(size_t(shape.n_layers), AlignedVector<float>(elements, 0.0f));
  }
}

void KvCache::copy_block(int src, int dst) {
  const size_t n = shape_.floats_per_block();
  copy_layers(k_, n, src, dst);
  copy_layers(v_, n, src, dst);
  copy_layers(k16_, n, src, dst);
  copy_layers(v16_, n, src, dst);
}

}  // namespace tidal
