#include "parallel/replica_router.h"

namespace tidal {

std::optional<size_t> pick_replica(std::span<const ReplicaLoad> loads) {
  std::optional<size_t> best;
  for (size_t i = 0; i < loads.size(); ++i) {
    const ReplicaLoad& a = loads[i];
    if (!a.up) continue;
    if (!best) {
      best = i;
      continue;
    }
    const ReplicaLoad& b = loads[*best];
    if (a.outstanding_tokens < b.outstanding_tokens ||
        (a.outstanding_tokens == b.outstanding_tokens && a.kv_usage < b.kv_usage)) {
      best = i;
    }
  }
  return best;
}

}  // namespace tidal
