#include "cli/reconfig_options.h"

#include <filesystem>

#include "core/error.h"
#include "model/variant.h"

namespace tidal {

void add_reconfig_options(CLI::App& app, ReconfigFlags& f) {
  app.add_option("--reconfig", f.mode,
                 "workload-aware reconfiguration of the model: off, advise (decide and log to "
                 "/admin/v1/decisions, switch nothing) or on (switch variant and batch knobs live)")
      ->check(CLI::IsMember({"off", "advise", "on"}))
      ->capture_default_str();
  app.add_option("--slo", f.slo,
                 "objectives, e.g. ttft_p95_ms=1000,tpot_p95_ms=50,accuracy=0.95,confidence=0.95 (also e2e_pNN_ms, "
                 "agree_tokens=0.9: a request agrees with the base when its served tokens' top-1 matches at that "
                 "fraction of positions)");
  app.add_option("--reconfig-candidates", f.candidates,
                 "variants the reconfigurator may serve besides the base, most accurate first")
      ->capture_default_str();
  app.add_option("--shadow-fraction", f.shadow_fraction,
                 "fraction of completed requests scored against the base under every candidate")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--shadow-budget", f.shadow_budget, "share of compute (wall-clock) shadow scoring may take")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--state-db", f.state_db,
                 "SQLite file where the reconfigurator keeps what it learns (default: <model>.tidal-state.sqlite "
                 "beside the model; 'none': nothing kept)");
  app.add_option("--reconfig-interval", f.interval_s, "seconds between policy rounds")
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  app.add_option("--reconfig-dwell", f.dwell_s, "seconds a configuration stays at least before the next switch")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--reconfig-window", f.window_s, "seconds of traffic the policy judges the load and latencies by")
      ->check(CLI::Range(1.0, 300.0))
      ->capture_default_str();
  app.add_option("--reconfig-max-delay", f.max_delay_s,
                 "seconds a decided switch waits at most for a quiet moment (nothing running)")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
}

ReconfiguratorOptions reconfigurator_options(const ReconfigFlags& f, const std::string& model_path) {
  namespace fs = std::filesystem;
  ReconfiguratorOptions o;
  o.mode = f.mode;
  o.slo = parse_slo(f.slo);
  for (const VariantSpec& v : parse_variant_list(f.candidates)) o.candidates.push_back(v.name);
  o.shadow_fraction = f.shadow_fraction;
  o.shadow_budget = f.shadow_budget;
  o.interval_seconds = f.interval_s;
  o.policy.dwell_seconds = f.dwell_s;
  o.max_delay_seconds = f.max_delay_s;
  o.window = std::chrono::seconds(int64_t(f.window_s));
  if (f.state_db != "none") o.state_db = f.state_db.empty() ? model_path + ".tidal-state.sqlite" : f.state_db;
  // The history's rows belong to this file: its name and size.
  std::error_code ec;
  const auto size = fs::file_size(model_path, ec);
  o.model_key = fs::path(model_path).filename().string() + ":" + (ec ? std::string("?") : std::to_string(size));
  return o;
}

}  // namespace tidal
