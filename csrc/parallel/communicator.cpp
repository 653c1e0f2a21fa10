#include "parallel/communicator.h"

namespace tidal {

void sum_in_rank_order(const float* gathered, int ranks, size_t count, float* out) {
  for (size_t i = 0; i < count; ++i) out[i] = gathered[i];
  for (int r = 1; r < ranks; ++r) {
    const float* part = gathered + size_t(r) * count;
    for (size_t i = 0; i < count; ++i) out[i] += part[i];
  }
}

}  // namespace tidal
