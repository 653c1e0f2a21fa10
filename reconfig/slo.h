// Service level objectives of one served model (the reconfigurator's
// targets): latency percentiles of TTFT, TPOT and end-to-end latency, and
// an accuracy objective, the fraction of requests that agree with the base
// model, held at a one-sided confidence level. A request agrees when,
// teacher-forced on the tokens it was served, the serving variant's and the
// base's top-1 predictions are equal at no fewer than `agree_tokens` of its
// positions; each request is one independent trial.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace tidal {

enum class LatencyMetric { kTtft, kTpot, kE2e };
const char* latency_metric_name(LatencyMetric m);  // "ttft" | "tpot" | "e2e"

struct LatencyObjective {
  LatencyMetric metric = LatencyMetric::kTtft;
  double percentile = 95;  // in (0, 100)
  double ms = 0;           // the percentile must stay at or under this

  std::string key() const;  // "ttft_p95_ms"
};

struct Slo {
  std::vector<LatencyObjective> latency;
  std::optional<double> accuracy = std::nullopt;  // fraction of requests that agree; none: any variant will do
  double confidence = 0.95;                       // one-sided, of the accuracy objective
  double agree_tokens = 0.9;                      // a request agrees at this fraction of its positions

  // The objective on `metric`, if any (the first when several).
  const LatencyObjective* find(LatencyMetric metric) const;
};

// The agreement rule: a request whose `matches` of `positions` served
// positions had the base's top-1 agrees at `agree_tokens` (none served: no).
bool request_agrees(int64_t positions, int64_t matches, double agree_tokens);

// Parses "ttft_p95_ms=1000,tpot_p95_ms=50,e2e_p99_ms=20000,accuracy=0.95,
// confidence=0.95,agree_tokens=0.9"; an empty string is no objective.
// Throws Error(kInvalidArgument) naming the bad item.
Slo parse_slo(const std::string& text);
// The same keys as a JSON object ({"ttft_p95_ms": 1000, "accuracy": 0.95, ...});
// "accuracy": null (as slo_json writes it) is no accuracy objective.
Slo slo_from_json(const nlohmann::json& j);
nlohmann::json slo_json(const Slo& slo);
std::string describe_slo(const Slo& slo);  // the parse_slo form

}  // namespace tidal
