#include "parallel/parallel_executor.h"

#include <cstdio>

#include "core/error.h"

namespace tidal {

ParallelExecutor::ParallelExecutor(const ModelConfig& config, const ParallelConfig& parallel,
                                   std::unique_ptr<RankWorker> rank0, FailureHandler on_failure)
    : config_(config), parallel_(parallel), rank0_(std::move(rank0)), on_failure_(std::move(on_failure)) {}

ParallelExecutor::~ParallelExecutor() {
  if (!failure_.empty()) return;
  StepPlan stop;
  stop.kind = StepPlan::Kind::kStop;
  try {
    send_plan(rank0_->replica(), stop);
  } catch (const Error& e) {
    std::fprintf(stderr, "tidal: stopping the parallel ranks failed: %s\n", e.what());
  }
}

size_t ParallelExecutor::kv_bytes_per_token(DType dtype) const {
  return max_kv_bytes_per_token(config_, parallel_, dtype);
}

void ParallelExecutor::allocate_kv_cache(int num_blocks, int block_size, DType dtype) {
  StepPlan plan;
  plan.kind = StepPlan::Kind::kAllocate;
  plan.num_blocks = num_blocks;
  plan.block_size = block_size;
  plan.kv_dtype = dtype;
  block_size_ = block_size;
  issue(plan);
}

std::vector<float>& ParallelExecutor::run(const SchedulerOutput& step) {
  plan_.kind = StepPlan::Kind::kStep;
  plan_.copies = step.block_copies;
  // One micro-batch per stage lets every stage work at once in a step.
  plan_micro_batches(step, block_size_, parallel_.pp, plan_.micro_batches);
  size_t rows = 0;
  for (const FlatBatch& mb : plan_.micro_batches) rows += mb.logits_rows.size();
  logits_.resize(rows * size_t(config_.vocab_size));
  issue(plan_);
  return logits_;
}

void ParallelExecutor::issue(const StepPlan& plan) {
  if (!failure_.empty()) throw Error(ErrorCode::kInternal, "the parallel executor failed earlier: " + failure_);
  try {
    send_plan(rank0_->replica(), plan);
    rank0_->execute(plan, &logits_);
  } catch (const std::exception& e) {
    failure_ = e.what();
    std::fprintf(stderr, "tidal: parallel step failed: %s\n", failure_.c_str());
    if (on_failure_) on_failure_(failure_);
    throw Error(ErrorCode::kInternal, "parallel step failed: " + failure_);
  }
}

}  // namespace tidal
