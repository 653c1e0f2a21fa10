// --plot: latency CDFs (TTFT, TPOT, ITL, E2E) and output throughput and
// concurrency over time, drawn by gnuplot into a PNG.
#pragma once

#include <string>
#include <vector>

#include "request_record.h"

namespace tidal::bench {

// Runs gnuplot; returns an empty string on success, else why it failed.
std::string write_plot(const std::vector<RequestRecord>& records, const std::string& png_path);

}  // namespace tidal::bench
