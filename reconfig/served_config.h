// A served model's configuration: which weights (the loaded base or a
// variant derived from it), how they are laid out (tensor, pipeline and
// data parallelism over a communicator), and the scheduler's knobs. Live
// reconfiguration replaces one with another (reconfig/served_model.h).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "parallel/parallel_config.h"

namespace tidal {

inline constexpr const char* kBaseVariant = "base";  // the weights as loaded

struct ServedConfig {
  std::string variant = kBaseVariant;  // "base" or a name parse_variant accepts
  ParallelConfig layout;
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  double target_tpot_ms = 0;           // 0: no time-per-output-token target
};

// What an operator (PUT /admin/v1/config) or the reconfigurator asks to
// change; fields left empty keep their current value.
struct ConfigChange {
  std::optional<std::string> variant = std::nullopt;
  std::optional<int> tp = std::nullopt, pp = std::nullopt, dp = std::nullopt;
  std::optional<int> max_num_seqs = std::nullopt, max_num_batched_tokens = std::nullopt;
  std::optional<double> target_tpot_ms = std::nullopt;
};

ServedConfig apply_change(ServedConfig config, const ConfigChange& change);

// Throws Error(kInvalidArgument) naming the field when a value is out of
// range or the variant is unknown. Whether the model can be split this way
// is checked against the model itself (check_parallel_config).
void check_config_values(const ServedConfig& config);

// What differs between two configurations: "variant", "layout", "knobs", or
// several joined by "+" ("variant+layout"); "none" when nothing does.
std::string change_kind(const ServedConfig& from, const ServedConfig& to);

// {"variant", "tp", "pp", "dp", "comm", "max_num_seqs", ...}
nlohmann::json config_json(const ServedConfig& config);
// One line for logs, e.g. "int8 tp2 pp1 dp1 (max_num_seqs 64, max_num_batched_tokens 2048, target_tpot_ms off)".
std::string describe_config(const ServedConfig& config);

}  // namespace tidal
