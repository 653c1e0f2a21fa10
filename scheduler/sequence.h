// A request's running state inside the engine: its tokens so far, its KV
// blocks and how many of its tokens already have K/V in the cache.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kv/block_manager.h"

namespace tidal {

enum class SeqStatus { kWaiting, kRunning, kFinished };

struct Sequence {
  int64_t id = 0;            // unique per engine
  int64_t arrival = 0;       // admission order, for FCFS ties
  int priority = 0;          // lower runs first (as vLLM)
  std::vector<int32_t> tokens;  // prompt followed by generated tokens
  int prompt_len = 0;
  int num_computed = 0;      // tokens whose K/V are in `blocks`
  BlockTable blocks;
  SeqStatus status = SeqStatus::kWaiting;
  int num_preemptions = 0;
  // Choices of its request still to be forked from it at its first sample
  // (n - 1 until then): they will run too, so admission counts them.
  int forks_to_come = 0;

  int num_generated() const { return int(tokens.size()) - prompt_len; }
  // Tokens still to run through the model before the next sample.
  int num_uncomputed() const { return int(tokens.size()) - num_computed; }
};

}  // namespace tidal
