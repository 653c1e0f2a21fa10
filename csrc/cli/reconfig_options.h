// `tidal serve`'s reconfigurator flags (--reconfig, --slo, shadow
// monitoring, the state database) and the options they make.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "reconfig/reconfigurator.h"

namespace tidal {

struct ReconfigFlags {
  std::string mode = "off";
  std::string slo;
  std::string candidates = "w4a16-g32,int8-g32-rot,int8-g32,int8-rot,int8";
  double shadow_fraction = 0.05;
  double shadow_budget = 0.05;
  std::string state_db;          // empty: next to the model file; "none": no history
  double interval_s = 2;
  double dwell_s = 30;
  double max_delay_s = 10;
  double window_s = 20;
};

void add_reconfig_options(CLI::App& app, ReconfigFlags& flags);
// Throws Error(kInvalidArgument) for a malformed --slo or candidate list.
ReconfiguratorOptions reconfigurator_options(const ReconfigFlags& flags, const std::string& model_path);

}  // namespace tidal
