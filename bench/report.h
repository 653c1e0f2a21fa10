// The human-readable result table, laid out like vLLM's `bench serve`.
#pragma once

#include <optional>
#include <ostream>

#include "metrics.h"

namespace tidal::bench {

struct ReportContext {
  std::optional<int> max_concurrency;
  std::optional<double> request_rate;  // omitted when infinite or not a fixed rate
};

void print_report(std::ostream& out, const Summary& s, const ReportContext& ctx);

}  // namespace tidal::bench
