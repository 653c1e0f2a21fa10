// Executes one scheduled step on a single device: performs copy-on-write
// block copies, lays the scheduled chunks out as one flat batch with its
// paged-attention metadata, and runs the forward pass.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"
#include "model/llama_forward.h"
#include "scheduler/scheduler.h"

namespace tidal {

class ModelRunner {
 public:
  ModelRunner(const Model& model, Backend& backend, KvCache& cache);

  // Returns the logits of every scheduled sequence with sample == true, in
  // schedule order: row i of the result is the i-th sampling sequence.
  std::vector<float>& run(const SchedulerOutput& step);
  int vocab_size() const { return vocab_; }

 private:
  LlamaForward forward_;
  KvCache& cache_;
  int vocab_;
  std::vector<int32_t> tokens_, positions_, seq_index_, slots_;
  std::vector<float> logits_;
};

}  // namespace tidal
