// The driver of a tensor/pipeline-parallel replica, as the engine sees it:
// an Executor that cuts each step into micro-batches, sends the plan to
// every rank and runs rank 0's own part (the first stage's first tensor
// shard) on the calling thread.
//
// A failed step (a rank died, hung or threw) leaves the ranks at different
// points of the step, so the executor does not try to resynchronize: it
// reports the failure through `on_failure` (which stops the local ranks or
// ends the MPI job, see deployment.h) and fails every later step at once.
// The engine takes the replica down at the first failure (engine.h), so
// with --dp the other replicas serve on.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "parallel/rank_worker.h"

namespace tidal {

class ParallelExecutor : public Executor {
 public:
  using FailureHandler = std::function<void(const std::string& reason)>;

  ParallelExecutor(const ModelConfig& config, const ParallelConfig& parallel, std::unique_ptr<RankWorker> rank0,
                   FailureHandler on_failure);
  ~ParallelExecutor() override;  // stops the other ranks

  size_t kv_bytes_per_token(DType dtype) const override;
  void allocate_kv_cache(int num_blocks, int block_size, DType dtype) override;
  std::vector<float>& run(const SchedulerOutput& step) override;

 private:
  void issue(const StepPlan& plan);

  ModelConfig config_;
  ParallelConfig parallel_;
  std::unique_ptr<RankWorker> rank0_;
  FailureHandler on_failure_;
  std::string failure_;  // set once a command failed
  int block_size_ = 0;
  StepPlan plan_;
  std::vector<float> logits_;
};

}  // namespace tidal
