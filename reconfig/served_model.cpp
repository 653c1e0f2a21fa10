#include "reconfig/served_model.h"

#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace tidal {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double mib(size_t bytes) { return double(bytes) / double(1 << 20); }

}  // namespace

const char* serving_state_name(ServingState state) {
  switch (state) {
    case ServingState::kServing: return "serving";
    case ServingState::kPreparing: return "preparing";
    case ServingState::kSwitching: return "switching";
  }
  return "?";
}

nlohmann::json switch_json(const SwitchRecord& r) {
  nlohmann::json j = {{"id", r.id},
                      {"origin", r.origin},
                      {"reason", r.reason},
                      {"from", config_json(r.from)},
                      {"to", config_json(r.to)},
                      {"kind", r.kind},
                      {"requested_at_ms", r.requested_at_ms},
                      {"outcome", r.outcome},
                      {"freed_old_first", r.freed_old_first},
                      {"prepare_seconds", r.prepare_seconds},
                      {"step_wait_seconds", r.step_wait_seconds},
                      {"pause_seconds", r.pause_seconds},
                      {"requests_moved", r.requests_moved},
                      {"tokens_recomputed", r.tokens_recomputed}};
  j["error"] = r.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.error);
  return j;
}

ServedModelRuntime::ServedModelRuntime(ModelSource source, const ServedConfig& initial, Options options)
    : source_(std::move(source)), options_(std::move(options)), config_(initial) {
  check_config_values(initial);
  if (options_.memory_limit_bytes > 0) {
    const size_t need = ConfigRuntime::estimated_bytes(source_, initial);
    if (need > options_.memory_limit_bytes) {
      throw Error(ErrorCode::kInvalidArgument, "the configuration " + describe_config(initial) + " needs up to " +
                                                   std::to_string(int64_t(mib(need))) + " MiB, over --memory-limit-mb " +
                                                   std::to_string(int64_t(mib(options_.memory_limit_bytes))));
    }
  }
  current_ = std::make_unique<ConfigRuntime>(source_, initial);
  max_model_len_ = current_->engine().max_model_len();
  engine_ = std::make_unique<AsyncEngine>(current_->engine(), options_.max_waiting);
}

ServedModelRuntime::~ServedModelRuntime() {
  if (worker_.joinable()) worker_.join();
  engine_->shutdown(false);
}

void ServedModelRuntime::shutdown(bool drain, std::chrono::milliseconds grace) {
  // A switch being prepared finishes first (or fails once the loop stops).
  engine_->shutdown(drain, grace);
  if (worker_.joinable()) worker_.join();
}

ServedConfig ServedModelRuntime::config() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return config_;
}

ServingState ServedModelRuntime::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

size_t ServedModelRuntime::resident_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_ ? current_->resident_bytes() : 0;
}

std::string ServedModelRuntime::storage() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_ ? current_->storage() : "";
}

size_t ServedModelRuntime::weight_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_ ? current_->weight_bytes() : 0;
}

std::vector<SwitchRecord> ServedModelRuntime::switches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {records_.begin(), records_.end()};
}

std::optional<SwitchRecord> ServedModelRuntime::last_switch() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (records_.empty()) return std::nullopt;
  return records_.back();
}

uint64_t ServedModelRuntime::num_switches(const std::string& outcome) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return outcome == "done" ? done_ : outcome == "failed" ? failed_ : 0;
}

std::vector<double> ServedModelRuntime::pause_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pauses_;
}

SwitchRecord* ServedModelRuntime::record_of(uint64_t id) {
  for (SwitchRecord& r : records_)
    if (r.id == id) return &r;
  return nullptr;
}

uint64_t ServedModelRuntime::request_switch(const ConfigChange& change, const std::string& origin,
                                            SwitchDone on_done, const std::string& reason) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (state_ != ServingState::kServing) {
    throw SwitchConflict("a switch of this model is in progress (" + std::string(serving_state_name(state_)) +
                         "); retry when it is done");
  }
  const ServedConfig to = apply_change(config_, change);
  check_config_values(to);
  if (to.layout.comm != "local" && source_.world && to.layout.ranks_per_replica() > source_.world->size()) {
    throw Error(ErrorCode::kInvalidArgument, "tp * pp = " + std::to_string(to.layout.ranks_per_replica()) +
                                                 " is more ranks than the MPI world's " +
                                                 std::to_string(source_.world->size()) + " processes");
  }
  // Splitting is checked on the base here, for a quick 400; the variant's
  // own formats are checked again while preparing.
  if (!to.layout.single_device()) check_parallel_config(source_.base, to.layout);

  SwitchRecord record;
  record.id = next_id_++;
  record.origin = origin;
  record.reason = reason;
  record.from = config_;
  record.to = to;
  record.kind = change_kind(config_, to);
  record.requested_at_ms = unix_ms();
  if (record.kind == "none") record.outcome = "unchanged";
  records_.push_back(record);
  if (records_.size() > kMaxRecords) records_.pop_front();
  if (record.kind == "none") {
    switched_.notify_all();
    lock.unlock();
    if (on_done) on_done(record);
    return record.id;
  }
  state_ = ServingState::kPreparing;
  on_done_ = std::move(on_done);
  if (worker_.joinable()) worker_.join();  // the previous switch's thread, already done
  worker_ = std::thread([this, id = record.id, to] { run_switch(id, to); });
  return record.id;
}

SwitchRecord ServedModelRuntime::wait_for(uint64_t id) {
  std::unique_lock<std::mutex> lock(mutex_);
  SwitchRecord* r = nullptr;
  switched_.wait(lock, [&] {
    r = record_of(id);
    return r == nullptr || r->outcome != "pending";
  });
  if (r == nullptr) throw Error(ErrorCode::kNotFound, "no switch " + std::to_string(id) + " in the log");
  return *r;
}

std::unique_ptr<ConfigRuntime> ServedModelRuntime::build(const ServedConfig& config) const {
  auto runtime = std::make_unique<ConfigRuntime>(source_, config);
  const int fits = runtime->engine().max_model_len();
  if (fits < max_model_len_) {
    throw Error(ErrorCode::kResourceExhausted,
                "the new configuration's KV pool holds " + std::to_string(fits) + " tokens per sequence, fewer than " +
                    "the " + std::to_string(max_model_len_) + " this model admits requests for");
  }
  return runtime;
}

void ServedModelRuntime::set_state(ServingState state) {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = state;
}

namespace {

void record_swap(SwitchRecord& r, const AsyncEngine::Swap& swap) {
  r.step_wait_seconds = swap.step_wait_seconds;
  r.pause_seconds = swap.pause_seconds;
  r.requests_moved = swap.requests_moved;
  r.tokens_recomputed = swap.tokens_to_recompute;
}

}  // namespace

void ServedModelRuntime::run_switch(uint64_t id, ServedConfig to) {
  SwitchRecord r;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    r = *record_of(id);
  }
  try {
    if (r.kind == "knobs") {
      retune(r);
    } else {
      if (options_.memory_limit_bytes > 0) {
        const size_t need = ConfigRuntime::estimated_bytes(source_, to);
        if (need > options_.memory_limit_bytes) {
          throw Error(ErrorCode::kResourceExhausted,
                      "the new configuration needs up to " + std::to_string(int64_t(mib(need))) +
                          " MiB, over --memory-limit-mb " + std::to_string(int64_t(mib(options_.memory_limit_bytes))));
        }
        r.freed_old_first = resident_bytes() + need > options_.memory_limit_bytes;
      }
      if (r.freed_old_first) {
        replace_old(r);
      } else {
        switch_beside(r);
      }
    }
    if (r.error.empty()) r.outcome = "done";
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  if (!r.error.empty()) r.outcome = "failed";
  finish(std::move(r));
}

void ServedModelRuntime::retune(SwitchRecord& r) {
  // Same weights, same layout: the scheduler is retuned in place, between
  // two steps; no request moves and nothing is allocated.
  set_state(ServingState::kSwitching);
  const ServedConfig& to = r.to;
  record_swap(r, engine_->change_engine([&to](LLMEngine& engine) {
    engine.set_scheduler_limits(to.max_num_seqs, to.max_num_batched_tokens, to.target_tpot_ms / 1000.0);
  }));
}

void ServedModelRuntime::switch_beside(SwitchRecord& r) {
  const auto start = Clock::now();
  std::unique_ptr<ConfigRuntime> next;
  try {
    next = build(r.to);
  } catch (...) {
    r.prepare_seconds = seconds_since(start);
    throw;
  }
  r.prepare_seconds = seconds_since(start);
  set_state(ServingState::kSwitching);
  record_swap(r, engine_->swap_engine([&](LLMEngine&) -> LLMEngine& { return next->engine(); }));
  std::unique_ptr<ConfigRuntime> old;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    old = std::exchange(current_, std::move(next));
  }
  old.reset();  // its ranks stop and its memory goes, off the engine loop
}

void ServedModelRuntime::replace_old(SwitchRecord& r) {
  set_state(ServingState::kSwitching);
  record_swap(r, engine_->swap_engine([&](LLMEngine&) -> LLMEngine& {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      current_.reset();
    }
    const auto start = Clock::now();
    std::unique_ptr<ConfigRuntime> next;
    try {
      next = build(r.to);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    r.prepare_seconds = seconds_since(start);
    if (!next) {
      // The old configuration comes back; if even that cannot be built the
      // model cannot serve at all (and this must not throw: the old engine
      // is gone).
      try {
        next = build(r.from);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "tidal: fatal: %s: rebuilding %s after a failed switch failed: %s\n",
                     options_.name.c_str(), describe_config(r.from).c_str(), e.what());
        std::abort();
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    current_ = std::move(next);
    return current_->engine();
  }));
}

void ServedModelRuntime::finish(SwitchRecord r) {
  std::string line = "tidal: " + options_.name + ": switch " + std::to_string(r.id) + " (" + r.origin + ", " + r.kind +
                     ") " + describe_config(r.from) + " -> " + describe_config(r.to) + ": " + r.outcome;
  char numbers[256];
  std::snprintf(numbers, sizeof numbers,
                "; prepared in %.3f s, waited %.1f ms for the step in flight, paused %.2f ms, %zu requests moved, "
                "%lld tokens to recompute",
                r.prepare_seconds, r.step_wait_seconds * 1000.0, r.pause_seconds * 1000.0, r.requests_moved,
                (long long)r.tokens_recomputed);
  line += numbers;
  if (r.freed_old_first) {
    line += " (both configurations do not fit --memory-limit-mb " +
            std::to_string(int64_t(mib(options_.memory_limit_bytes))) +
            ": the old one was freed first and preparing was inside the pause)";
  }
  if (!r.reason.empty()) line += "; why: " + r.reason;
  if (!r.error.empty()) line += "; the old configuration " + std::string(r.freed_old_first ? "was rebuilt and " : "") +
                                "keeps serving: " + r.error;
  std::fprintf(stderr, "%s\n", line.c_str());

  std::unique_lock<std::mutex> lock(mutex_);
  // A switch that happened (even one that rebuilt the old configuration)
  // paused the model.
  if (r.outcome == "done" || r.freed_old_first) pauses_.push_back(r.pause_seconds);
  if (r.outcome == "done") {
    ++done_;
    config_ = r.to;
  } else {
    ++failed_;
  }
  SwitchDone on_done = std::exchange(on_done_, nullptr);
  const SwitchDone listener = listener_;
  if (SwitchRecord* slot = record_of(r.id)) *slot = r;
  state_ = ServingState::kServing;
  switched_.notify_all();
  lock.unlock();
  if (on_done) on_done(r);
  if (listener) listener(r);
}

void ServedModelRuntime::set_switch_listener(SwitchDone listener) {
  std::lock_guard<std::mutex> lock(mutex_);
  listener_ = std::move(listener);
}

}  // namespace tidal
