#include "engine/stats_carry.h"

#include <algorithm>
#include <span>

namespace tidal {

namespace {

std::span<const EngineStats> per_replica(const EngineStats& s) {
  return s.replicas.empty() ? std::span<const EngineStats>(&s, 1) : std::span<const EngineStats>(s.replicas);
}

void add_counters(EngineStats& to, const EngineStats& from) {
  to.prefix.queries += from.prefix.queries;
  to.prefix.hits += from.prefix.hits;
  to.num_preemptions += from.num_preemptions;
  to.prompt_tokens += from.prompt_tokens;
  to.generation_tokens += from.generation_tokens;
  to.steps += from.steps;  // per replica; the engine's own count is carried apart
}

}  // namespace

void StatsCarry::retire(const EngineStats& stats) {
  const std::span<const EngineStats> replicas = per_replica(stats);
  if (replicas_.size() < replicas.size()) replicas_.resize(replicas.size());
  for (size_t i = 0; i < replicas.size(); ++i) add_counters(replicas_[i], replicas[i]);
  engine_steps_ += stats.steps;
}

EngineStats StatsCarry::apply(const EngineStats& current) const {
  if (replicas_.empty()) return current;
  const std::span<const EngineStats> now = per_replica(current);
  const size_t n = std::max(now.size(), replicas_.size());
  std::vector<EngineStats> replicas(now.begin(), now.end());
  replicas.resize(n);
  for (size_t i = now.size(); i < n; ++i) {
    // A replica gone since: its pool's shape stays, its gauges are zero.
    replicas[i].block_size = current.block_size;
    replicas[i].kv_cache_dtype = current.kv_cache_dtype;
  }
  for (size_t i = 0; i < replicas_.size(); ++i) add_counters(replicas[i], replicas_[i]);
  if (n == 1) {
    replicas[0].steps = current.steps + engine_steps_;
    return replicas[0];
  }
  // The totals are the replicas' sums, as LLMEngine::stats makes them.
  EngineStats total = current;
  total.prefix = {};
  total.num_preemptions = total.prompt_tokens = total.generation_tokens = 0;
  for (const EngineStats& r : replicas) add_counters(total, r);
  total.steps = current.steps + engine_steps_;
  total.replicas = std::move(replicas);
  return total;
}

}  // namespace tidal
