#include "reconfig/policy.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace tidal {

namespace {

// A variant name taken apart: "int8-g32-rot" is family "int", 8 bits,
// groups of 32, rotated; a group of 0 means one scale per output row, the
// coarsest.
struct Derivation {
  std::string family;
  int bits = 0;
  int group = 0;
  bool rotated = false;
};

std::optional<Derivation> derivation_of(std::string name) {
  Derivation d;
  if (name.size() > 4 && name.ends_with("-rot")) {
    d.rotated = true;
    name.resize(name.size() - 4);
  }
  if (const size_t g = name.find("-g"); g != std::string::npos) {
    d.group = std::atoi(name.c_str() + g + 2);
    name.resize(g);
  }
  if (name.starts_with("int")) {
    d.family = "int";
    d.bits = std::atoi(name.c_str() + 3);
  } else if (name.starts_with("w") && name.ends_with("a16")) {
    d.family = "a16";
    d.bits = std::atoi(name.c_str() + 1);
  } else {
    return std::nullopt;  // f32, f16, bf16: rounding, not ordered by aggressiveness here
  }
  return d;
}

// Coarser groups are larger; per-row scales (0) are the coarsest of all.
int64_t coarseness(int group) { return group == 0 ? std::numeric_limits<int64_t>::max() : group; }

std::string fmt(const char* format, double x) {
  char buf[96];
  std::snprintf(buf, sizeof buf, format, x);
  return buf;
}

}  // namespace

bool more_aggressive(const std::string& a, const std::string& b) {
  const std::optional<Derivation> x = derivation_of(a), y = derivation_of(b);
  if (!x || !y || x->family != y->family || x->rotated != y->rotated) return false;
  const bool no_finer = x->bits <= y->bits && coarseness(x->group) >= coarseness(y->group);
  return no_finer && (x->bits < y->bits || coarseness(x->group) > coarseness(y->group));
}

nlohmann::json decision_json(const Decision& d) {
  nlohmann::json evaluated = nlohmann::json::array();
  for (const CandidateEvaluation& e : d.evaluated) {
    evaluated.push_back({{"variant", e.variant},
                         {"accuracy_ok", e.accuracy_ok},
                         {"excluded", e.excluded},
                         {"capacity", e.capacity ? capacity_json(*e.capacity) : nlohmann::json(nullptr)}});
  }
  return {{"target", config_json(d.target)}, {"change", d.change},     {"urgent", d.urgent},
          {"reason", d.reason},              {"candidates", evaluated}, {"wanted", d.wanted}};
}

Decision decide(const PolicyInput& in, const PolicyOptions& options) {
  Decision d;
  d.target = in.current;
  // Demand: the arrival rate plus the backlog, which must drain within one
  // window too. Arrivals alone read zero in a lull that follows a burst the
  // engine has not served yet.
  const double lambda =
      in.load.arrival_rps + (in.load.seconds > 0 ? in.load.waiting / in.load.seconds : 0.0);
  // Until requests have finished, the prompt and output lengths are unknown:
  // assume the worst usual case, a long answer to a short prompt.
  const double prompt = in.load.completed > 0 ? in.load.mean_prompt_tokens : 128;
  const double output = in.load.completed > 0 ? in.load.mean_output_tokens : 256;

  std::vector<std::string> failed;
  int current_index = -1;
  for (size_t i = 0; i < in.candidates.size(); ++i) {
    if (in.candidates[i].variant == in.current.variant) current_index = int(i);
  }
  // The chosen candidate: the first (most accurate) that carries the load,
  // else the feasible one with the most capacity.
  int chosen = -1, most_capacity = -1;
  for (size_t i = 0; i < in.candidates.size(); ++i) {
    const CandidateState& c = in.candidates[i];
    CandidateEvaluation e;
    e.variant = c.variant;
    const bool is_base = c.variant == kBaseVariant;
    e.accuracy_ok = is_base || !in.slo.accuracy || c.verdict == AccuracyVerdict::kMeets;
    for (const std::string& f : failed) {
      if (!is_base && more_aggressive(c.variant, f)) e.excluded = "pruned: " + f + " misses the accuracy objective";
    }
    if (e.excluded.empty() && !e.accuracy_ok) {
      if (c.verdict == AccuracyVerdict::kFails) {
        failed.push_back(c.variant);
        e.excluded = "misses the accuracy objective (lower bound " + fmt("%.3f", c.lower_bound) + ")";
      } else {
        e.excluded = "accuracy unknown (not enough shadow samples yet)";
      }
    }
    if (!c.fit) {
      if (e.excluded.empty()) e.excluded = "no performance profile";
      d.evaluated.push_back(e);
      continue;
    }
    e.capacity = estimate_capacity(*c.fit, in.slo, options.batch_cap, prompt, output, lambda, options.latency_margin);
    const CapacityEstimate& cap = *e.capacity;
    const bool is_current = int(i) == current_index;
    // Moving to a more accurate variant than the current one needs margin.
    const bool above_current = current_index >= 0 && int(i) < current_index;
    const double limit = above_current ? options.up_utilization : options.stay_utilization;
    bool carries = cap.feasible() && cap.utilization <= limit;
    if (is_current && in.violating) carries = false;  // measured, not predicted: it does not carry this load
    if (e.excluded.empty() && !cap.feasible()) e.excluded = cap.ttft_ok ? "no batch meets the TPOT objective" : "a prefill alone misses the TTFT objective";
    if (!e.excluded.empty()) {
      // An unknown variant the policy would take is worth sampling more.
      if (c.verdict == AccuracyVerdict::kUnknown && !is_base && in.slo.accuracy && carries && chosen < 0 &&
          e.excluded.starts_with("accuracy unknown")) {
        d.wanted.push_back(c.variant);
      }
      d.evaluated.push_back(e);
      continue;
    }
    if (carries && chosen < 0) chosen = int(i);
    if (most_capacity < 0 || cap.capacity_rps > d.evaluated[size_t(most_capacity)].capacity->capacity_rps) {
      most_capacity = int(d.evaluated.size());
    }
    d.evaluated.push_back(e);
  }

  int pick = -1;
  if (chosen >= 0) {
    pick = chosen;
    d.reason = in.candidates[size_t(chosen)].variant + " is the most accurate candidate that carries " +
               fmt("%.2f", lambda) + " req/s (utilization " +
               fmt("%.2f", d.evaluated[size_t(chosen)].capacity->utilization) + ")";
  } else if (most_capacity >= 0) {
    pick = most_capacity;
    d.reason = "no candidate carries " + fmt("%.2f", lambda) + " req/s; " + d.evaluated[size_t(pick)].variant +
               " has the most capacity (" + fmt("%.2f", d.evaluated[size_t(pick)].capacity->capacity_rps) + " req/s)";
  } else {
    d.reason = "no candidate can be judged (accuracy or performance unknown): keeping the configuration";
    return d;
  }
  const CandidateEvaluation& p = d.evaluated[size_t(pick)];
  d.target.variant = p.variant;
  d.target.max_num_seqs = std::max(1, p.capacity->max_batch);
  if (const LatencyObjective* tpot = in.slo.find(LatencyMetric::kTpot)) {
    d.target.target_tpot_ms = tpot->ms * options.latency_margin;
  }
  d.urgent = in.violating;
  const bool differs = d.target.variant != in.current.variant || d.target.max_num_seqs != in.current.max_num_seqs ||
                       std::abs(d.target.target_tpot_ms - in.current.target_tpot_ms) > 1e-9;
  if (!differs) {
    d.reason = "stay: " + d.reason;
    return d;
  }
  if (in.pinned) {
    d.reason = "pinned by the operator (would switch: " + d.reason + ")";
    return d;
  }
  if (in.seconds_since_switch < options.dwell_seconds) {
    d.reason = "dwell: last switch " + fmt("%.1f", in.seconds_since_switch) + " s ago (would switch: " + d.reason + ")";
    return d;
  }
  d.change = true;
  return d;
}

}  // namespace tidal
