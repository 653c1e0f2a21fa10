// Data parallelism's front door: which replica takes a new request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace tidal {

struct ReplicaLoad {
  // Over the replica's unfinished requests: prompt tokens not yet computed
  // plus tokens still to generate (n * max_tokens less those generated).
  uint64_t outstanding_tokens = 0;
  double kv_usage = 0.0;  // fraction of its KV blocks in use
  bool up = true;         // false once its executor failed: it takes nothing more
};

// The replica that is up with the least outstanding work: the fewest
// outstanding tokens, then the lowest KV usage, then the lowest index (so
// that equal replicas fill in a fixed order and a run is reproducible).
// Nothing when no replica is up.
std::optional<size_t> pick_replica(std::span<const ReplicaLoad> loads);

}  // namespace tidal
