#include "engine/async_engine.h"

#include <cstdio>
#include <exception>
#include <vector>

#include "core/error.h"

namespace tidal {

AsyncEngine::AsyncEngine(LLMEngine& engine, size_t max_waiting)
    : engine_(&engine), max_waiting_(max_waiting), stats_(engine.stats()) {
  thread_ = std::thread([this] { loop(); });
}

AsyncEngine::~AsyncEngine() { shutdown(false); }

AsyncEngine::SubmitResult AsyncEngine::submit(Request request, Sink sink) {
  // Rejections surface here, on the caller's thread, not on the loop.
  validate(request);
  const auto arrival = std::chrono::steady_clock::now();
  std::shared_ptr<RequestObserver> observer;
  SubmitResult result = SubmitResult::kAccepted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    observer = observer_;
    if (!accepting_) {
      result = SubmitResult::kShuttingDown;
    } else if (stats_.replicas_up == 0) {
      result = SubmitResult::kUnavailable;
    } else if (stats_.num_waiting + incoming_.size() >= max_waiting_) {
      result = SubmitResult::kQueueFull;
    }
  }
  // Asked outside the lock: the observer may take its own.
  const bool keep = observer && observer->on_arrival(request, result == SubmitResult::kAccepted);
  if (result != SubmitResult::kAccepted) return result;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!accepting_) return SubmitResult::kShuttingDown;
  incoming_.push_back({std::move(request), std::move(sink), arrival, keep});
  ++in_flight_;
  wake_.notify_one();
  return SubmitResult::kAccepted;
}

void AsyncEngine::set_observer(std::shared_ptr<RequestObserver> observer) {
  std::lock_guard<std::mutex> lock(mutex_);
  observer_ = std::move(observer);
}

void AsyncEngine::validate(const Request& request) const {
  std::shared_lock<std::shared_mutex> lock(engine_mutex_);
  engine_->validate(request);
}

AsyncEngine::Swap AsyncEngine::change_engine(const std::function<void(LLMEngine&)>& change) {
  return queue_swap({nullptr, change, {}});
}

AsyncEngine::Swap AsyncEngine::swap_engine(NextEngine next) { return queue_swap({std::move(next), nullptr, {}}); }

AsyncEngine::Swap AsyncEngine::queue_swap(PendingSwap swap) {
  std::future<Swap> done = swap.done.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) throw Error(ErrorCode::kInternal, "the engine has stopped");
    swaps_.push_back(std::move(swap));
    wake_.notify_one();
  }
  return done.get();
}

void AsyncEngine::run_swap() {
  PendingSwap swap;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    swap = std::move(swaps_.front());
    swaps_.pop_front();
  }
  const auto start = std::chrono::steady_clock::now();
  Swap result;
  result.step_wait_seconds = std::chrono::duration<double>(start - swap.asked).count();
  // Held throughout: `next` may destroy the old engine, which validate()
  // must then not reach. Submissions wait for the pause to end.
  std::unique_lock<std::shared_mutex> engine_lock(engine_mutex_);
  if (swap.in_place) {
    try {
      swap.in_place(*engine_);
    } catch (...) {
      swap.done.set_exception(std::current_exception());
      return;
    }
    result.pause_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    swap.done.set_value(result);
    return;
  }
  std::vector<MovedRequest> moved = engine_->release_requests();
  result.requests_moved = moved.size();
  for (const MovedRequest& m : moved) result.tokens_to_recompute += m.tokens_to_recompute();
  const EngineStats retired = engine_->stats();
  LLMEngine* next = nullptr;
  try {
    next = &swap.next(*engine_);
    next->adopt_requests(moved);
  } catch (...) {
    // `next` left the old engine alive (its contract) or adopt refused
    // before taking anything: the old engine takes its requests back.
    if (!moved.empty()) engine_->adopt_requests(moved);
    swap.done.set_exception(std::current_exception());
    return;
  }
  if (next != engine_) {
    engine_ = next;
    // In one step, so that a scrape never counts the old engine twice or
    // not at all.
    std::lock_guard<std::mutex> lock(mutex_);
    carried_.retire(retired);
    stats_ = engine_->stats();
  }
  engine_lock.unlock();
  result.pause_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  swap.done.set_value(result);
}

void AsyncEngine::abort(const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  aborts_.push_back(request_id);
  wake_.notify_one();
}

void AsyncEngine::shutdown(bool drain, std::chrono::milliseconds grace) {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    accepting_ = false;
    if (drain && !stop_) idle_.wait_for(lock, grace, [this] { return in_flight_ == 0; });
    stop_ = true;
    wake_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

EngineStats AsyncEngine::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  EngineStats s = carried_.apply(stats_);
  s.num_waiting += incoming_.size();
  return s;
}

namespace {

// A throwing sink must not take the loop (and every other request) down.
void call_sink(const AsyncEngine::Sink& sink, const RequestOutput& out) {
  try {
    sink(out);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tidal: output sink of %s failed: %s\n", out.request_id.c_str(), e.what());
  }
}

}  // namespace

void AsyncEngine::deliver(const RequestOutput& out) {
  auto it = live_.find(out.request_id);
  if (it == live_.end()) return;
  Live& live = it->second;
  call_sink(live.sink, out);
  if (loop_observer_) {
    const auto now = std::chrono::steady_clock::now();
    for (const CompletionDelta& d : out.deltas) {
      if (d.index != 0 || d.token_ids.empty()) continue;
      if (live.trace.ttft_seconds < 0) {
        live.trace.ttft_seconds = std::chrono::duration<double>(now - live.trace.arrival).count();
      }
      live.trace.output_tokens += int(d.token_ids.size());
      if (live.keep_tokens) live.trace.output.insert(live.trace.output.end(), d.token_ids.begin(), d.token_ids.end());
      if (d.finish == FinishReason::kAbort) live.trace.aborted = true;
    }
    if (out.finished) {
      live.trace.e2e_seconds = std::chrono::duration<double>(now - live.trace.arrival).count();
      live.trace.prompt_tokens = out.prompt_tokens;
      for (const CompletionDelta& d : out.deltas) live.trace.aborted |= d.finish == FinishReason::kAbort;
      loop_observer_->on_finished(std::move(live.trace));
    }
  }
  if (!out.finished) return;
  live_.erase(it);
  request_done();
}

void AsyncEngine::request_done() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (--in_flight_ == 0) idle_.notify_all();
}

void AsyncEngine::abort_everything() {
  std::vector<std::string> ids;
  ids.reserve(live_.size());
  for (const auto& [id, live] : live_) ids.push_back(id);
  for (const std::string& id : ids) {
    std::optional<RequestOutput> out;
    try {
      out = engine_->abort_request(id);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tidal: aborting %s failed: %s\n", id.c_str(), e.what());
    }
    if (!out) {
      // The engine lost track of it; the sink still needs its final output.
      out.emplace();
      out->request_id = id;
      out->finished = true;
    }
    deliver(*out);
  }
}

void AsyncEngine::loop() {
  for (;;) {
    std::deque<Incoming> incoming;
    std::deque<std::string> aborts;
    bool stop;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] {
        return stop_ || !incoming_.empty() || !aborts_.empty() || !swaps_.empty() || engine_->has_unfinished();
      });
      incoming.swap(incoming_);
      aborts.swap(aborts_);
      stop = stop_;
      loop_observer_ = observer_;
    }

    for (Incoming& in : incoming) {
      const std::string id = in.request.id;
      const int n = in.request.sampling.n;
      Live live{std::move(in.sink), {}, in.keep_tokens};
      live.trace.arrival = in.arrival;
      if (in.keep_tokens) live.trace.prompt = in.request.prompt;
      try {
        engine_->add_request(std::move(in.request));
        live_[id] = std::move(live);
      } catch (const std::exception& e) {
        // submit() validated it, so only a clashing id, or an engine whose
        // last replica failed since, lands here: end the request at once
        // rather than leave its client waiting.
        std::fprintf(stderr, "tidal: request %s refused: %s\n", id.c_str(), e.what());
        RequestOutput out;
        out.request_id = id;
        out.finished = true;
        out.error = e.what();
        for (int i = 0; i < n; ++i) {
          CompletionDelta d;
          d.index = i;
          d.finish = FinishReason::kAbort;
          out.deltas.push_back(std::move(d));
        }
        call_sink(live.sink, out);
        request_done();
      }
    }
    for (const std::string& id : aborts) {
      if (!live_.count(id)) continue;  // already finished
      if (std::optional<RequestOutput> out = engine_->abort_request(id)) deliver(*out);
    }

    // Between steps: a switch sees every request admitted so far.
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop || swaps_.empty()) break;
      }
      run_swap();
    }

    if (stop) {
      abort_everything();
    } else if (engine_->has_unfinished()) {
      std::vector<RequestOutput> outputs;
      const auto start = std::chrono::steady_clock::now();
      try {
        outputs = engine_->step();
      } catch (const std::exception& e) {
        // The step's state is unknown; ending every request keeps clients
        // from hanging and frees the blocks.
        std::fprintf(stderr, "tidal: engine step failed: %s\n", e.what());
        abort_everything();
      }
      if (loop_observer_) {
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const EngineStats after = engine_->stats();
        const EngineStats& before = stats_;  // this engine's, from the previous iteration
        const uint64_t tokens = after.prompt_tokens + after.generation_tokens - before.prompt_tokens -
                                before.generation_tokens;
        loop_observer_->on_step(int(tokens), seconds, after.num_running, after.num_waiting, after.kv_usage);
      }
      for (const RequestOutput& out : outputs) deliver(out);
    }
    if (stop) {
      // Switches asked for while stopping are refused, never left waiting.
      std::lock_guard<std::mutex> lock(mutex_);
      for (PendingSwap& swap : swaps_) {
        swap.done.set_exception(std::make_exception_ptr(Error(ErrorCode::kInternal, "the engine has stopped")));
      }
      swaps_.clear();
    }

    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_ = engine_->stats();
    }
    if (stop) return;
  }
}

}  // namespace tidal
