// What LLMEngine needs from whatever runs the model for one replica: one
// device (ModelRunner) or a tensor/pipeline-parallel group of ranks
// (parallel/parallel_executor.h). The engine never knows which.
#pragma once

#include <cstddef>
#include <vector>

#include "core/dtype.h"
#include "scheduler/scheduler.h"

namespace tidal {

class Executor {
 public:
  virtual ~Executor() = default;

  // Bytes of K and V one token takes, stored as `dtype`, on the device
  // holding the most of them; the engine sizes the block pool from it
  // (every device gets as many blocks as the engine's block manager hands
  // out).
  virtual size_t kv_bytes_per_token(DType dtype) const = 0;
  // Allocates the KV cache, elements of `dtype` (F32, the reference, or
  // F16), on every device; called once, before run(). Throws Error when a
  // device cannot hold that dtype.
  virtual void allocate_kv_cache(int num_blocks, int block_size, DType dtype = DType::F32) = 0;
  // Performs the step's copy-on-write block copies and runs the forward
  // pass. Returns the logits of every scheduled sequence with sample ==
  // true, in schedule order ([i][vocab] for the i-th sampling sequence).
  // Throws tidal::Error when the step could not run.
  virtual std::vector<float>& run(const SchedulerOutput& step) = 0;
};

}  // namespace tidal
