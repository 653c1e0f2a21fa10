// What the workload-aware reconfigurator has learned about a served model,
// kept in an SQLite file so a restarted server starts from it instead of
// from nothing: fitted step times per variant and layout, shadow-scored
// quality per variant, the workload history and its own decisions.
//
// Every row belongs to the model key given at open (e.g. "<gguf file
// name>:<file size>", so a changed file starts afresh); one file may hold
// several models, and reads only return the opened model's rows. Tables
// are bounded: an insert beyond a bound deletes the oldest rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

struct sqlite3;

namespace tidal {

// A fitted step-time model of one variant at one layout: a step computing n tokens takes a + b*n seconds.
struct StepProfile {
  std::string variant;             // "base", "int8", ...
  std::string layout;              // e.g. "tp1 pp1 dp1"
  double a_seconds = 0, b_seconds_per_token = 0;
  int64_t observations = 0;
  std::string source;              // "calibration" | "live"
  int64_t measured_at_ms = 0;      // unix ms
};

// One sampled request scored teacher-forced under the base and a variant (shadow monitoring).
struct ShadowScore {
  std::string variant;
  int64_t positions = 0, top1_matches = 0;
  double kl_sum = 0;
  bool greedy_agree = false;
  int64_t scored_at_ms = 0;
};

// One monitor window, for the workload history. A statistic with no sample
// in the window may be NaN; it reads back as NaN.
struct WorkloadSample {
  int64_t at_ms = 0;
  std::string config;              // describe_config text
  double arrival_rps = 0, goodput_rps = 0, ttft_p95_ms = 0, tpot_p95_ms = 0, e2e_p95_ms = 0;
  double waiting = 0, running = 0, kv_usage = 0;
};

// Safe to call from several threads (calls take turns on one connection),
// and several processes may open the same file: it uses WAL journaling and
// waits up to a few seconds for another writer's lock.
class HistoryStore {
 public:
  static constexpr size_t kMaxShadowScoresPerVariant = 10000;  // per (model, variant)
  static constexpr size_t kMaxWorkloadSamples = 100000;        // per model
  static constexpr size_t kMaxDecisions = 10000;               // per model

  // Opens or creates the database at `path`. Throws Error naming the path
  // and SQLite's message when it cannot be opened or written
  // (kUnsupported when its schema is newer than this code).
  HistoryStore(const std::string& path, std::string model_key);
  ~HistoryStore();
  HistoryStore(const HistoryStore&) = delete;
  HistoryStore& operator=(const HistoryStore&) = delete;

  // Replaces the profile with the same (variant, layout, source), if any.
  void put_step_profile(const StepProfile& p);
  std::vector<StepProfile> step_profiles() const;  // ordered by variant, layout, source

  void add_shadow_score(const ShadowScore& s);
  // In the order added; at most the newest `limit_per_variant` of each variant.
  std::vector<ShadowScore> shadow_scores(size_t limit_per_variant = kMaxShadowScoresPerVariant) const;

  void add_workload(const WorkloadSample& w);
  // Samples at or after `since_ms`, ordered by time.
  std::vector<WorkloadSample> workload_since(int64_t since_ms) const;

  void add_decision(int64_t at_ms, const std::string& json);  // a reconfigurator decision, as JSON text
  // The newest `limit` (at_ms, json), oldest first.
  std::vector<std::pair<int64_t, std::string>> decisions(size_t limit) const;

  const std::string& path() const { return path_; }

 private:
  struct CloseDb {
    void operator()(sqlite3* db) const;
  };

  std::string path_, model_key_;
  mutable std::mutex mutex_;  // one statement at a time on db_
  std::unique_ptr<sqlite3, CloseDb> db_;
};

}  // namespace tidal
