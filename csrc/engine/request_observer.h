// What a serving loop tells whoever watches its traffic (the
// reconfigurator's monitor, reconfig/sli_monitor.h): every arrival, every
// step's size and time, and every finished request's latencies, measured
// inside the server from submission on (so they include queueing), not by
// clients.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "engine/request.h"

namespace tidal {

struct FinishedRequest {
  std::chrono::steady_clock::time_point arrival;  // submitted
  double ttft_seconds = -1;       // submission -> first token of choice 0; -1: it never had one
  double e2e_seconds = 0;         // submission -> finished
  int prompt_tokens = 0;
  int output_tokens = 0;          // of choice 0
  bool aborted = false;
  // Filled only when on_arrival asked to keep them: the prompt and choice
  // 0's tokens as served.
  std::vector<int32_t> prompt, output;

  // vLLM's TPOT: (e2e - ttft) / (tokens - 1); -1 with fewer than 2 tokens.
  double tpot_seconds() const {
    return output_tokens > 1 && ttft_seconds >= 0 ? (e2e_seconds - ttft_seconds) / (output_tokens - 1) : -1;
  }
};

class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  // On the submitting thread, for every request submitted, admitted or
  // not. Returns whether to keep the admitted request's tokens for
  // on_finished (a sample for shadow scoring). Must not block.
  virtual bool on_arrival(const Request& request, bool admitted) = 0;
  // On the loop thread after each engine step: tokens it computed
  // (prompt and generated), its wall time, and the queue after it.
  virtual void on_step(int tokens, double seconds, size_t running, size_t waiting, double kv_usage) = 0;
  // On the loop thread, once per admitted request. Must not block.
  virtual void on_finished(FinishedRequest&& request) = 0;
};

}  // namespace tidal
