#include "parallel/replica_router.h"

namespace tidal {

size_t pick_replica(std::span<const ReplicaLoad> loads) {
  size_t best = 0;
  for (size_t i = 1; i < loads.size(); ++i) {
    const ReplicaLoad& a = loads[i];
    const ReplicaLoad& b = loads[best];
    if (a.outstanding_tokens < b.outstanding_tokens ||
        (a.outstanding_tokens == b.outstanding_tokens && a.kv_usage < b.kv_usage)) {
      best = i;
    }
  }
  return best;
}

}  // namespace tidal
