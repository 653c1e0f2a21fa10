#include "reconfig/performance_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/window_runner.h"

namespace tidal {

nlohmann::json capacity_json(const CapacityEstimate& c) {
  return {{"max_batch", c.max_batch},     {"batches_tried", c.batches_tried},
          {"step_ms", c.step_seconds * 1e3}, {"capacity_rps", c.capacity_rps},
          {"utilization", std::isfinite(c.utilization) ? nlohmann::json(c.utilization) : nlohmann::json("inf")},
          {"ttft_ok", c.ttft_ok}};
}

CapacityEstimate estimate_capacity(const StepFit& fit, const Slo& slo, int batch_cap, double prompt_tokens,
                                   double output_tokens, double arrival_rps, double margin) {
  CapacityEstimate c;
  const LatencyObjective* tpot = slo.find(LatencyMetric::kTpot);
  const double step_limit = tpot ? tpot->ms / 1000.0 * margin : std::numeric_limits<double>::infinity();
  std::vector<int> sizes;  // 1, 2, 4, ..., batch_cap
  for (int batch = 1; batch < batch_cap; batch *= 2) sizes.push_back(batch);
  sizes.push_back(std::max(batch_cap, 1));
  for (int batch : sizes) {
    ++c.batches_tried;
    if (fit.step_seconds(batch) > step_limit) break;  // larger batches only take longer
    c.max_batch = batch;
  }
  if (const LatencyObjective* ttft = slo.find(LatencyMetric::kTtft)) {
    c.ttft_ok = fit.step_seconds(std::max(1.0, prompt_tokens)) <= ttft->ms / 1000.0 * margin;
  }
  if (c.max_batch == 0) {
    c.utilization = arrival_rps > 0 ? std::numeric_limits<double>::infinity() : 0;
    return c;
  }
  c.step_seconds = fit.step_seconds(c.max_batch);
  const double per_request =
      std::max(prompt_tokens, 1.0) * fit.b + std::max(output_tokens, 1.0) * (fit.a / c.max_batch + fit.b);
  c.capacity_rps = per_request > 0 ? 1.0 / per_request : std::numeric_limits<double>::infinity();
  c.utilization = arrival_rps / c.capacity_rps;
  return c;
}

StepFit calibrate_step_time(const Model& model, Backend& backend,
                            const std::function<void(const std::function<void()>&)>& unit) {
  constexpr int kContext = 64, kWide = 32, kRepeats = 3;
  std::vector<int32_t> tokens(size_t(kContext + 1 + kWide), 0);
  // Any ids in the vocabulary will do: the cost does not depend on them.
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7919) % size_t(model.config.vocab_size));
  double one = std::numeric_limits<double>::infinity(), wide = one;
  for (int r = 0; r < kRepeats; ++r) {
    WindowRunner runner(model, backend, int(tokens.size()));
    unit([&] { runner.run(tokens, 0, kContext, kContext); });
    unit([&] {
      const auto t0 = std::chrono::steady_clock::now();
      runner.run(tokens, kContext, kContext + 1, kContext);
      one = std::min(one, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    });
    unit([&] {
      const auto t0 = std::chrono::steady_clock::now();
      // Every row gets logits, as every sequence of a decode batch does.
      runner.run(tokens, kContext + 1, kContext + 1 + kWide, kContext + 1);
      wide = std::min(wide, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    });
  }
  StepFit fit;
  fit.b = std::max(0.0, (wide - one) / double(kWide - 1));
  fit.a = std::max(0.0, one - fit.b);
  fit.source = "calibration";
  fit.observations = kRepeats;
  return fit;
}

}  // namespace tidal
