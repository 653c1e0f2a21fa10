// Runs an LLMEngine on its own loop thread so that HTTP threads never run the
// model and the loop never blocks on a socket. Requests and aborts reach the
// loop through one command queue; outputs leave through each request's sink.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "engine/engine.h"
#include "engine/request_observer.h"
#include "engine/stats_carry.h"

namespace tidal {

class AsyncEngine {
 public:
  // Called on the engine thread for every output of the request, the last
  // one with finished == true. Must not block (post to an I/O executor).
  using Sink = std::function<void(const RequestOutput&)>;

  // kUnavailable: every data-parallel replica of the engine has failed.
  enum class SubmitResult { kAccepted, kQueueFull, kShuttingDown, kUnavailable };

  // What moving every request to another engine took (swap_engine).
  struct Swap {
    double step_wait_seconds = 0;   // asked for until the loop reached a step boundary (the step in flight)
    double pause_seconds = 0;       // the loop stopped stepping until it stepped the new engine
    size_t requests_moved = 0;
    int64_t tokens_to_recompute = 0;
  };
  // Called on the loop thread at a step boundary with the engine that has
  // just been emptied of its requests; returns the engine to go on with.
  // It may destroy the old engine and build another there (a switch that
  // cannot hold both), but must not throw after it has destroyed it.
  using NextEngine = std::function<LLMEngine&(LLMEngine& emptied)>;

  // `max_waiting`: requests admitted but not yet running beyond which
  // submit() answers kQueueFull (the server turns that into 429).
  AsyncEngine(LLMEngine& engine, size_t max_waiting);
  ~AsyncEngine();  // shutdown(false)

  // Throws Error(kInvalidArgument) for a request the engine would reject.
  SubmitResult submit(Request request, Sink sink);
  void abort(const std::string& request_id);
  // Stops accepting. drain=true waits (at most `grace`) for in-flight
  // requests to finish; whatever is still in flight then, or everything when
  // drain=false, is aborted (its sink gets a final kAbort output). Joins the
  // loop thread; later calls do nothing.
  void shutdown(bool drain, std::chrono::milliseconds grace = std::chrono::hours(24));

  // At the next step boundary: takes every request out of the current
  // engine, asks `next` for the engine to continue with, and hands them to
  // it; blocks until that is done. New submissions queue meanwhile (they
  // reach the new engine). If `next` throws, the requests go back to the
  // old engine and the error is rethrown here. Counters in stats() carry
  // over, so they never go back.
  Swap swap_engine(NextEngine next);
  // At the next step boundary, runs `change` on the current engine (no
  // request moves); blocks until done.
  Swap change_engine(const std::function<void(LLMEngine&)>& change);
  // Checks a request against the current engine (safe from any thread).
  void validate(const Request& request) const;

  // Snapshot after the latest step; num_waiting also counts submitted
  // requests the loop has not picked up yet.
  EngineStats stats() const;

  // Reports arrivals, steps and finished requests to `observer` from now
  // on (null: to nobody). Requests already in flight are reported too, as
  // they finish.
  void set_observer(std::shared_ptr<RequestObserver> observer);

 private:
  void loop();
  // Delivers an output to its sink; forgets the sink when the request is done.
  void deliver(const RequestOutput& out);
  void request_done();
  void abort_everything();
  void run_swap();

  // Replaced only by the loop thread, under engine_mutex_ held exclusively;
  // other threads read it under a shared lock.
  LLMEngine* engine_;
  mutable std::shared_mutex engine_mutex_;
  struct PendingSwap {
    NextEngine next;                              // swap_engine
    std::function<void(LLMEngine&)> in_place;     // or change_engine
    std::promise<Swap> done;
    std::chrono::steady_clock::time_point asked = std::chrono::steady_clock::now();
  };
  // Queues a swap or change for the loop and waits for its outcome.
  Swap queue_swap(PendingSwap swap);
  std::deque<PendingSwap> swaps_;                // guarded by mutex_
  StatsCarry carried_;                           // counters of engines swapped out
  size_t max_waiting_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  // A request on its way in, and one the loop serves: its sink and what
  // the observer will be told when it finishes.
  struct Incoming {
    Request request;
    Sink sink;
    std::chrono::steady_clock::time_point arrival;
    bool keep_tokens = false;
  };
  struct Live {
    Sink sink;
    FinishedRequest trace;
    bool keep_tokens = false;
  };
  std::deque<Incoming> incoming_;
  std::deque<std::string> aborts_;
  std::unordered_map<std::string, Live> live_;  // loop thread only
  std::shared_ptr<RequestObserver> observer_;  // guarded by mutex_; the loop uses a copy per iteration
  std::shared_ptr<RequestObserver> loop_observer_;  // loop thread only
  size_t in_flight_ = 0;                         // submitted, not yet finished
  bool accepting_ = true;
  bool stop_ = false;                            // set by shutdown: abort what is left and exit
  EngineStats stats_;
  std::thread thread_;
};

}  // namespace tidal
