// What the driver of a tensor/pipeline-parallel replica sends all of its
// ranks, one command at a time, and the micro-batching of a step.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "engine/model_runner.h"
#include "scheduler/scheduler.h"

namespace tidal {

struct StepPlan {
  enum class Kind : uint8_t { kAllocate, kStep, kStop };
  Kind kind = Kind::kStep;
  int num_blocks = 0;  // kAllocate: the KV pool every rank allocates
  int block_size = 0;
  DType kv_dtype = DType::F32;  // kAllocate: the element type of that pool
  std::vector<BlockCopy> copies;         // kStep: copy-on-write, before the forward
  std::vector<FlatBatch> micro_batches;  // kStep: contiguous runs of the step's sequences
};

std::vector<uint8_t> encode_plan(const StepPlan& plan);
// Throws Error(kCorrupt) for bytes encode_plan did not produce.
StepPlan decode_plan(const std::vector<uint8_t>& bytes);

// Splits the step's sequences into at most `count` contiguous micro-batches
// (never an empty one) of about equal numbers of tokens. Pipeline stages
// work on different micro-batches at once; every op being batch-invariant,
// the split never changes a result.
void plan_micro_batches(const SchedulerOutput& step, int block_size, int count, std::vector<FlatBatch>& out);

}  // namespace tidal
