// std::vector whose buffer starts on a 64-byte boundary. The SIMD kernels
// load 64 bytes at a time along rows whose lengths are multiples of 16
// floats; from a 64-byte-aligned base every such load stays inside one cache
// line, while malloc's 16-byte alignment makes every one of them straddle
// two lines and starves the tiles (`tidal bench-offline --f32` on SmolLM2:
// prefill 525 tok/s before this alignment, 824 after; docs/PERFORMANCE.md).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace tidal {

constexpr size_t kSimdAlignment = 64;

template <typename T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}

  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kSimdAlignment))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(kSimdAlignment)); }

  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const {
    return true;
  }
};

template <typename T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

}  // namespace tidal
