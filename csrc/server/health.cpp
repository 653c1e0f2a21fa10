#include "server/health.h"

#include <span>

#include "server/json_text.h"

namespace tidal {

HealthReport health_report(const std::vector<ModelHealth>& models) {
  bool degraded = false, unavailable = false;
  nlohmann::json list = nlohmann::json::array();
  for (const ModelHealth& m : models) {
    const EngineStats& s = m.stats;
    const std::span<const EngineStats> replicas =
        s.replicas.empty() ? std::span<const EngineStats>(&s, 1) : std::span<const EngineStats>(s.replicas);
    nlohmann::json down = nlohmann::json::array();
    for (size_t i = 0; i < replicas.size(); ++i) {
      // A replica gone since a switch (num_replicas 0) is not down: it is no more.
      if (replicas[i].num_replicas == 1 && replicas[i].replicas_up == 0) {
        down.push_back({{"replica", i}, {"error", replicas[i].failure}});
      }
    }
    degraded = degraded || !down.empty();
    unavailable = unavailable || s.replicas_up == 0;
    list.push_back({{"model", m.model},
                    {"replicas", s.num_replicas},
                    {"replicas_up", s.replicas_up},
                    {"down", std::move(down)}});
  }
  if (!degraded) return {};
  HealthReport report;
  report.status = unavailable ? 503 : 200;
  report.body = json_text({{"status", unavailable ? "unavailable" : "degraded"}, {"models", std::move(list)}});
  return report;
}

}  // namespace tidal
