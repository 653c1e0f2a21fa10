// Executes one scheduled step on a single device: performs copy-on-write
// block copies, lays the scheduled chunks out as one flat batch with its
// paged-attention metadata, and runs the forward pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/executor.h"
#include "kv/kv_cache.h"
#include "model/llama_forward.h"
#include "scheduler/scheduler.h"

namespace tidal {

// Scheduled sequences laid out as one batch: their new tokens in schedule
// order, where each goes in the paged KV cache, and which rows sample. The
// parallel executors ship these to other ranks, one per micro-batch.
struct FlatBatch {
  std::vector<int32_t> tokens, positions, seq_index, slots;
  std::vector<std::vector<int32_t>> block_tables;  // per sequence
  std::vector<int32_t> logits_rows;

  // Lays out sequences [begin, end) of `step` (reusing this batch's memory).
  void assign(const SchedulerOutput& step, size_t begin, size_t end, int block_size);
  int n_tokens() const { return int(tokens.size()); }
  // A ForwardBatch pointing into this one.
  ForwardBatch view() const;
};

class ModelRunner : public Executor {
 public:
  ModelRunner(const Model& model, Backend& backend);

  size_t kv_bytes_per_token(DType dtype) const override;
  void allocate_kv_cache(int num_blocks, int block_size, DType dtype) override;
  std::vector<float>& run(const SchedulerOutput& step) override;

 private:
  const ModelConfig& config_;
  LlamaForward forward_;
  std::unique_ptr<KvCache> cache_;
  FlatBatch batch_;
  std::vector<float> logits_;
};

}  // namespace tidal
