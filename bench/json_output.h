// The --json file: the run's configuration, the summary (vLLM's result keys
// where they exist) and every request's record.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "metrics.h"
#include "request_record.h"

namespace tidal::bench {

// Writes {"config", "summary", "requests"}; throws std::runtime_error on I/O failure.
void write_json(const std::string& path, const nlohmann::json& config, const Summary& s,
                const std::vector<RequestRecord>& records);

}  // namespace tidal::bench
