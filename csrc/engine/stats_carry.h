// Keeps an engine's cumulative counters going across engine swaps (live
// reconfiguration): what the engines swapped out had counted is added to
// the current engine's stats, per data-parallel replica index, so no
// counter ever goes back, not even one of a replica that no longer exists
// (it keeps being reported, with its gauges at zero).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/engine.h"

namespace tidal {

class StatsCarry {
 public:
  // Adds `stats` (an engine about to be dropped) to what is carried.
  void retire(const EngineStats& stats);
  // `current` with the carried counters added.
  EngineStats apply(const EngineStats& current) const;

 private:
  std::vector<EngineStats> replicas_;  // counters only, per replica index
  uint64_t engine_steps_ = 0;
};

}  // namespace tidal
