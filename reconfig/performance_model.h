// The reconfigurator's performance model: a configuration's engine step
// that computes n tokens takes a + b*n seconds (a: streaming the weights
// once, b: each token's share), fitted per variant from a short timed
// calibration at start-up and refined by live step timings
// (SliMonitor::step_fit). From it, for a workload of P prompt and O output
// tokens per request arriving at lambda per second:
//   - the largest decode batch whose step meets the TPOT objective, found
//     by trying 1, 2, 4, ... and stopping at the first miss (a batch that
//     misses rules out every larger one: monotonicity pruning);
//   - capacity: with B sequences decoding, each output token costs
//     a/B + b and each prompt token b, so one request costs
//     P*b + O*(a/B + b) seconds of engine time and the engine carries
//     1 / that many requests per second; utilization = lambda / capacity.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "model/backend.h"
#include "model/model.h"
#include "reconfig/slo.h"

namespace tidal {

struct StepFit {
  double a = 0, b = 0;  // seconds per step, seconds per token
  std::string source;   // "calibration" | "live"
  int64_t observations = 0;
  double step_seconds(double tokens) const { return a + b * tokens; }
};

struct CapacityEstimate {
  int max_batch = 0;          // 0: not even one sequence meets the TPOT objective
  int batches_tried = 0;      // how many batch sizes the scan evaluated before pruning
  double step_seconds = 0;    // at max_batch
  double capacity_rps = 0;
  double utilization = 0;     // arrival rate / capacity (inf with no capacity)
  bool ttft_ok = true;        // a lone prompt's prefill fits the TTFT objective
  bool feasible() const { return max_batch > 0 && ttft_ok; }
};
nlohmann::json capacity_json(const CapacityEstimate& c);

// `batch_cap`: the largest batch to consider (max_num_seqs' upper end).
// TPOT and TTFT objectives are checked with a safety factor `margin`
// (0.9: predicted times must stay within 90% of the objective), since the
// objectives are percentiles and the fit a mean.
CapacityEstimate estimate_capacity(const StepFit& fit, const Slo& slo, int batch_cap, double prompt_tokens,
                                   double output_tokens, double arrival_rps, double margin = 0.9);

// Times one decode step of 1 sequence and a 32-token step of `model` on
// `backend` (after a short context, best of three), and fits a and b.
// Each timed forward runs through `unit` (which takes the shared pool's
// turn), so serving is never starved by it.
StepFit calibrate_step_time(const Model& model, Backend& backend,
                            const std::function<void(const std::function<void()>&)>& unit);

}  // namespace tidal
