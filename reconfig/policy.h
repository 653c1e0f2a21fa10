// The reconfigurator's decision, a pure function of what the monitor saw
// (so it is tested on synthetic monitors). After the paper's Algorithm 1:
//   (a) variant selection: candidates are tried most accurate first (the
//       base, then the variants in the operator's order); a variant must
//       meet the accuracy objective by its sequential test (unknown counts
//       as not meeting), and one that fails rules out the variants derived
//       the same way more aggressively (fewer bits, coarser groups:
//       monotonicity pruning);
//   (b) batching under the latency objectives: the largest decode batch
//       whose predicted step meets TPOT (PerformanceModel, pruned the same
//       way), giving the configuration's capacity at the observed load.
// The choice is the most accurate candidate that carries the load; when
// none does, the one with the most capacity. Layout (tp/pp/dp) stays as
// the operator set it: on one CPU socket splitting the cores buys nothing
// (docs/RECONFIGURATION.md).
// Hysteresis: staying needs utilization under `stay_utilization`, moving to
// a more accurate variant needs it under the lower `up_utilization`, and
// no switch happens within `dwell_seconds` of the last one, so noisy
// indicators cannot make it flap.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "reconfig/agreement_stats.h"
#include "reconfig/performance_model.h"
#include "reconfig/served_config.h"
#include "reconfig/sli_monitor.h"
#include "reconfig/slo.h"

namespace tidal {

struct CandidateState {
  std::string variant;                   // "base" first
  AccuracyVerdict verdict = AccuracyVerdict::kUnknown;  // ignored for the base
  double lower_bound = 0;
  std::optional<StepFit> fit;            // none: never measured, cannot be judged
};

struct PolicyOptions {
  double stay_utilization = 0.85;
  double up_utilization = 0.6;
  double dwell_seconds = 30;
  int batch_cap = 256;
  double latency_margin = 0.9;           // see estimate_capacity
};

struct PolicyInput {
  Slo slo;
  ServedConfig current;
  std::vector<CandidateState> candidates;
  SliWindow load;                        // the recent window, every configuration
  bool violating = false;                // the current configuration misses a latency objective
  double seconds_since_switch = 1e9;
  bool pinned = false;
};

struct CandidateEvaluation {
  std::string variant;
  bool accuracy_ok = false;
  std::string excluded;                  // why it cannot be chosen ("" when it can)
  std::optional<CapacityEstimate> capacity;
};

struct Decision {
  ServedConfig target;
  bool change = false;                   // target differs from current and should be deployed
  bool urgent = false;                   // a latency objective is being missed: deploy without waiting for quiet
  std::string reason;
  std::vector<CandidateEvaluation> evaluated;
  std::vector<std::string> wanted;       // unknown variants that would have been chosen: sample them more
};
nlohmann::json decision_json(const Decision& d);

// Whether variant `a` is derived like `b` but more aggressively (same
// family and rotation; no more bits and no finer groups, one of them
// strictly), so that it is assumed no more accurate.
bool more_aggressive(const std::string& a, const std::string& b);

Decision decide(const PolicyInput& in, const PolicyOptions& options);

}  // namespace tidal
