// Per-thread working memory for the CPU kernels: grows to the largest
// request seen and is then reused, so steady-state calls never allocate.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace tidal::cpu {

// Aligned to a cache line, as the object itself is, so threads that each
// own one never share a line.
class alignas(64) ScratchBuffer {
 public:
  // At least n floats, 64-byte aligned; contents are unspecified.
  float* get(size_t n) {
    if (n > capacity_) {
      data_.reset(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(64))));
      capacity_ = n;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t(64)); }
  };
  std::unique_ptr<float, Free> data_;
  size_t capacity_ = 0;
};

}  // namespace tidal::cpu
