// The workload-aware reconfigurator of one served model: the brain that
// drives live reconfiguration (served_model.h). It watches the model's
// traffic (SliMonitor), scores a sampled fraction of served requests
// teacher-forced under the base and every candidate variant off the
// critical path (ShadowScorer, within a compute budget, judged by
// AccuracyLedger), keeps a performance model per variant (calibrated at
// start-up, refined by live step timings), and every few seconds (sooner
// on an SLO violation) runs the policy (policy.h). A decision to switch is
// deployed at a quiet moment (nothing waiting or running) or after a
// maximum delay, at once when a latency objective is being missed. What it
// learns (profiles, shadow scores, workload, decisions) goes to a SQLite
// history (history_store.h), so a restarted server starts from it.
//
// Modes: "advise" decides and logs, switches nothing; "on" also deploys.
// A configuration the operator sets through the admin API pins the model
// until released: decisions are still made and logged, not deployed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "engine/pool_turns.h"
#include "reconfig/accuracy_ledger.h"
#include "reconfig/history_store.h"
#include "reconfig/performance_model.h"
#include "reconfig/policy.h"
#include "reconfig/served_model.h"
#include "reconfig/sli_monitor.h"
#include "reconfig/slo.h"
#include "reconfig/variant_store.h"

namespace tidal {

struct ReconfiguratorOptions {
  std::string mode = "advise";            // "advise" | "on"
  Slo slo;
  std::vector<std::string> candidates;    // variants it may choose, most accurate first (the base is always one)
  double shadow_fraction = 0.05;          // of completed requests scored
  double directed_fraction = 0.25;        // while the policy wants a verdict on a variant
  double shadow_budget = 0.05;            // share of wall-clock compute shadow work may take
  std::string state_db;                   // SQLite history ("" = none)
  std::string model_key;                  // the history's rows for this model
  double interval_seconds = 2;            // between policy rounds
  double max_delay_seconds = 10;          // a decided switch waits at most this long for a quiet moment
  std::chrono::seconds window{20};        // the SLIs the policy reads
  PolicyOptions policy;
  size_t max_pending_samples = 64;        // samples waiting to be scored (oldest dropped beyond)
  uint64_t seed = 0x7269646c;
};

class Reconfigurator {
 public:
  // Starts watching `runtime` (its AsyncEngine's observer) and the shadow
  // and policy threads. `pool`/`turns`: the pool serving shares, whose turn
  // every unit of shadow work takes. Throws Error for an unknown candidate
  // or an unusable state database.
  Reconfigurator(ServedModelRuntime& runtime, VariantStore& variants, ThreadPool& pool, PoolTurns& turns,
                 ReconfiguratorOptions options);
  ~Reconfigurator();  // stop()
  // Stops the threads (a unit of shadow work in flight finishes first) and
  // stops watching the model; what it learned stays readable. Idempotent.
  void stop();

  const std::string& mode() const { return options_.mode; }
  Slo slo() const;
  void set_slo(const Slo& slo);
  void pin();
  void unpin();
  bool pinned() const;

  // The newest `limit` decisions, oldest first.
  std::vector<nlohmann::json> decisions(size_t limit) const;
  // Mode, SLO, pin, the SLI window, each candidate's accuracy and profile,
  // and shadow monitoring's counters.
  nlohmann::json status() const;
  // Runs one policy round now (and deploys it in mode "on"); returns the
  // decision's record. For tests and the admin API's "decide" action.
  nlohmann::json decide_now();

  // Counters for /metrics.
  struct Counters {
    uint64_t decisions = 0, switches_requested = 0, samples_scored = 0, samples_dropped = 0;
    double shadow_seconds = 0;
  };
  Counters counters() const;
  std::vector<VariantAccuracy> accuracy() const { return ledger_.all(); }

 private:
  struct Stopped {};  // unwinds shadow work when stopping

  void policy_loop();
  void shadow_loop();
  void calibrate_missing();
  // Runs one unit of shadow work under the budget and the pool's turn.
  void run_unit(const std::function<void()>& work, bool budgeted);
  PolicyInput gather() const;
  std::optional<StepFit> fit_of(const std::string& variant, const std::string& current_variant) const;
  nlohmann::json round();  // decide, record, deploy
  void deploy(const Decision& d, nlohmann::json& record);
  void take_sample(FinishedRequest&& r);
  void persist_live_fit();
  int64_t now_ms() const;

  ServedModelRuntime& runtime_;
  VariantStore& variants_;
  ThreadPool& pool_;
  PoolTurns& turns_;
  ReconfiguratorOptions options_;
  std::shared_ptr<SliMonitor> monitor_;
  AccuracyLedger ledger_;
  std::unique_ptr<HistoryStore> store_;

  mutable std::mutex mutex_;              // everything below
  std::condition_variable wake_;
  bool stop_ = false;
  bool pinned_ = false;
  Slo slo_;
  std::vector<std::string> wanted_;
  std::deque<FinishedRequest> samples_;
  std::map<std::string, StepFit> calibrated_;  // by variant
  // The candidates' weights, held for scoring (and shared with a
  // configuration that serves one) for the reconfigurator's life.
  std::vector<std::shared_ptr<const Model>> held_;
  std::map<std::string, StepFit> live_;        // by variant, at the layout it was measured
  std::deque<nlohmann::json> decisions_;
  std::chrono::steady_clock::time_point last_switch_;
  bool switched_ever_ = false;
  Counters counters_;
  double credit_seconds_ = 0;                  // shadow budget not yet spent
  std::chrono::steady_clock::time_point credit_at_ = std::chrono::steady_clock::now();
  uint64_t next_decision_ = 1;
  std::mutex round_mutex_;                     // one round at a time (the loop and decide_now)

  std::thread shadow_thread_, policy_thread_;
};

}  // namespace tidal
