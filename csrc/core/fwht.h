// The fast Walsh-Hadamard transform, one order of operations for every
// caller: the CPU backend's run-time rotation (float) and the offline weight
// rotations of model/rotation.h (double).
#pragma once

#include <cmath>

namespace tidal {

// Whether `width` values split into whole blocks fwht can transform.
inline bool is_hadamard_block(int block, int width) {
  return block > 0 && (block & (block - 1)) == 0 && width % block == 0;
}

// v[0..n) becomes H_n v / sqrt(n) in place (n a power of two, H_n the
// Sylvester Hadamard matrix, symmetric): butterflies (a, b) -> (a + b, a - b)
// over strides 1, 2, 4, ..., then the scale.
template <typename T>
void fwht(T* v, int n) {
  for (int h = 1; h < n; h *= 2) {
    for (int i = 0; i < n; i += 2 * h) {
      for (int j = i; j < i + h; ++j) {
        const T a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
    }
  }
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(n)));
  for (int i = 0; i < n; ++i) v[i] *= scale;
}

}  // namespace tidal
