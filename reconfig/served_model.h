// One served model's runtime: its current configuration (ConfigRuntime),
// the AsyncEngine loop that serves it, and live switching to another
// configuration without losing a request.
//
// A switch prepares the new configuration on a thread of its own while the
// old one keeps serving (derive the weights, start the ranks, allocate the
// KV pool); then, at a step boundary, the engine loop takes every request
// out of the old engine and hands it to the new one, which recomputes
// prompt plus generated tokens (AsyncEngine::swap_engine). Only that
// hand-over pauses the model; submissions queue meanwhile. The old
// configuration is freed after the loop has moved on. When a memory limit
// says both cannot be resident, the old one is freed first and preparing
// happens inside the pause (said so in the switch's record and log line).
// A switch that fails to prepare leaves the old configuration serving. A
// switch of scheduler knobs alone retunes the engine in place instead.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/async_engine.h"
#include "reconfig/config_runtime.h"
#include "reconfig/served_config.h"

namespace tidal {

enum class ServingState { kServing, kPreparing, kSwitching };
const char* serving_state_name(ServingState state);

// What one switch did, for the switch log (GET /admin/v1/switches).
struct SwitchRecord {
  uint64_t id = 0;
  std::string origin;              // who asked: "operator", "reconfigurator", ...
  std::string reason;              // why, when the asker said (the reconfigurator's decision)
  ServedConfig from, to;
  std::string kind;                // change_kind(from, to)
  int64_t requested_at_ms = 0;     // unix time
  std::string outcome = "pending"; // pending | done | failed | unchanged
  std::string error;               // why it failed
  bool freed_old_first = false;    // both did not fit the memory limit: preparing was inside the pause
  double prepare_seconds = 0;      // building the new configuration
  double step_wait_seconds = 0;    // ready until the engine loop reached a step boundary
  double pause_seconds = 0;        // the model stopped stepping until it stepped the new engine
  size_t requests_moved = 0;
  int64_t tokens_recomputed = 0;   // prompt + generated tokens the new engine runs again (before prefix hits)
};
nlohmann::json switch_json(const SwitchRecord& record);

// Asked for a switch while another of the same model is in progress.
class SwitchConflict : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ServedModelRuntime {
 public:
  struct Options {
    size_t max_waiting = 256;         // AsyncEngine's queue bound (429 beyond)
    size_t memory_limit_bytes = 0;    // 0: none; else configurations' resident_bytes are kept under it
    std::string name;                 // for log lines
  };

  // Builds and starts serving `initial`. Throws Error as ConfigRuntime does.
  // Over MPI this runs on the driver (workers run serve_mpi_worker).
  ServedModelRuntime(ModelSource source, const ServedConfig& initial, Options options);
  ~ServedModelRuntime();  // waits for a switch in progress, then stops the engine (aborting what is left)

  AsyncEngine& engine() { return *engine_; }
  // The context requests are admitted for; fixed for the server's life (a
  // configuration whose pool holds less is refused).
  int max_model_len() const { return max_model_len_; }

  // Starts switching to the current configuration with `change` applied and
  // returns the switch's id. Throws Error(kInvalidArgument) for a
  // configuration that cannot exist (before anything is built) and
  // SwitchConflict while another switch is in progress. `on_done`, if
  // given, is called with the record once the switch has an outcome (on
  // the switch's thread, or on this one when nothing changes).
  using SwitchDone = std::function<void(const SwitchRecord&)>;
  uint64_t request_switch(const ConfigChange& change, const std::string& origin, SwitchDone on_done = {},
                          const std::string& reason = "");
  // Called with every switch's record once it has an outcome, whoever asked
  // for it (after the switch's own on_done), on the switch's thread.
  void set_switch_listener(SwitchDone listener);
  // Blocks until switch `id` has an outcome; returns its record.
  SwitchRecord wait_for(uint64_t id);
  // Stops the engine: with drain, in-flight requests get `grace` to finish.
  void shutdown(bool drain, std::chrono::milliseconds grace);

  ServedConfig config() const;
  ServingState state() const;
  size_t resident_bytes() const;
  std::string storage() const;    // of the serving configuration's weights
  size_t weight_bytes() const;
  std::vector<SwitchRecord> switches() const;  // oldest first (the last kMaxRecords)
  std::optional<SwitchRecord> last_switch() const;
  uint64_t num_switches(const std::string& outcome) const;
  std::vector<double> pause_seconds() const;   // of every switch that happened

 private:
  static constexpr size_t kMaxRecords = 1000;

  // On the switch's thread: one of the three ways below, then finish().
  void run_switch(uint64_t id, ServedConfig to);
  void retune(SwitchRecord& r);         // knobs only: the scheduler, in place
  void switch_beside(SwitchRecord& r);  // build the new one beside the old, then swap
  void replace_old(SwitchRecord& r);    // both do not fit: free the old inside the pause, then build
  // A configuration that can take this model's requests (its pool holds
  // the context the server admits), or Error.
  std::unique_ptr<ConfigRuntime> build(const ServedConfig& config) const;
  void set_state(ServingState state);
  void finish(SwitchRecord record);
  SwitchRecord* record_of(uint64_t id);  // under mutex_

  ModelSource source_;
  Options options_;
  int max_model_len_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable switched_;
  ServingState state_ = ServingState::kServing;
  ServedConfig config_;               // the serving one
  std::deque<SwitchRecord> records_;
  uint64_t next_id_ = 1;
  std::vector<double> pauses_;
  uint64_t done_ = 0, failed_ = 0;
  std::thread worker_;
  SwitchDone on_done_;                // of the switch in progress
  SwitchDone listener_;
  // Destroyed engine loop first, then the configuration it ran.
  std::unique_ptr<ConfigRuntime> current_;
  std::unique_ptr<AsyncEngine> engine_;
};

}  // namespace tidal
