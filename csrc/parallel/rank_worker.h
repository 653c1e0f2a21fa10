// One rank of a tensor/pipeline-parallel replica: its shard of the weights
// and of the KV cache, and what it does with each command from the driver.
//
// A step runs its micro-batches in order. The first stage embeds them, a
// later stage receives the previous stage's activations; after its layers a
// stage sends them on (buffered, so it goes straight to the next micro-batch
// while the next stage works on this one), and the last stage's tensor rank
// 0 sends the logits back to rank 0, the driver.
#pragma once

#include <memory>
#include <vector>

#include "kv/kv_cache.h"
#include "model/backend.h"
#include "model/llama_forward.h"
#include "parallel/communicator.h"
#include "parallel/shard.h"
#include "parallel/step_plan.h"

namespace tidal {

class RankWorker {
 public:
  // Collective over `replica` (the group of the replica's tp * pp ranks,
  // whose rank decides this worker's shard): splits off the tensor-parallel
  // group of its stage. `full` must outlive the worker.
  RankWorker(const Model& full, const ParallelConfig& parallel, std::unique_ptr<Communicator> replica,
             Backend& backend);

  // For ranks other than 0: runs commands from rank 0 until kStop.
  void serve();
  // Runs one command. On rank 0, `logits` receives the logits of every
  // sampling row of the step, in micro-batch order.
  void execute(const StepPlan& plan, std::vector<float>* logits);
  Communicator& replica() { return *replica_; }

 private:
  void step(const StepPlan& plan, std::vector<float>* logits);

  ShardLayout layout_;
  std::unique_ptr<Communicator> replica_;
  std::unique_ptr<Communicator> tp_group_;
  Model shard_;
  LlamaForward forward_;
  std::unique_ptr<KvCache> cache_;
  std::vector<float> rows_;  // one micro-batch's logits
};

// The driver's half of the command channel: rank 0 sends a plan to every
// rank of the replica; the others wait for it without a deadline (an idle
// engine sends nothing).
void send_plan(Communicator& replica, const StepPlan& plan);
StepPlan receive_plan(Communicator& replica);

}  // namespace tidal
