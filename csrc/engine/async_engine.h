// Runs an LLMEngine on its own loop thread so that HTTP threads never run the
// model and the loop never blocks on a socket. Requests and aborts reach the
// loop through one command queue; outputs leave through each request's sink.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "engine/engine.h"

namespace tidal {

class AsyncEngine {
 public:
  // Called on the engine thread for every output of the request, the last
  // one with finished == true. Must not block (post to an I/O executor).
  using Sink = std::function<void(const RequestOutput&)>;

  enum class SubmitResult { kAccepted, kQueueFull, kShuttingDown };

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

  // Snapshot after the latest step; num_waiting also counts submitted
  // requests the loop has not picked up yet.
  EngineStats stats() const;
  const LLMEngine& engine() const { return engine_; }

 private:
  void loop();
  // Delivers an output to its sink; forgets the sink when the request is done.
  void deliver(const RequestOutput& out);
  void request_done();
  void abort_everything();

  LLMEngine& engine_;
  size_t max_waiting_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::pair<Request, Sink>> incoming_;
  std::deque<std::string> aborts_;
  std::unordered_map<std::string, Sink> sinks_;  // loop thread only
  size_t in_flight_ = 0;                         // submitted, not yet finished
  bool accepting_ = true;
  bool stop_ = false;                            // set by shutdown: abort what is left and exit
  EngineStats stats_;
  std::thread thread_;
};

}  // namespace tidal
