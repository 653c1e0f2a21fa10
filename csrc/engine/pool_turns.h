// Lets several engines share one CPU thread pool (`tidal serve --variants`,
// and the old and new configuration of a model during a live switch).
// Every forward pass takes the whole pool, so two at once would only fight
// over the cores (and the pool's workers spin while they wait). Each engine
// therefore runs its steps through a TurnTakingExecutor, which waits for its
// turn; turns go first come, first served, so a busy model cannot starve
// the others.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/executor.h"

namespace tidal {

// A FIFO lock: waiters get the turn in the order they asked for it.
class PoolTurns {
 public:
  void acquire();
  void release();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  uint64_t next_ticket_ = 0;
  uint64_t serving_ = 0;
};

// An Executor that holds the turn while the one it wraps runs a step.
class TurnTakingExecutor : public Executor {
 public:
  TurnTakingExecutor(std::unique_ptr<Executor> inner, PoolTurns& turns) : inner_(std::move(inner)), turns_(turns) {}

  size_t kv_bytes_per_token(DType dtype) const override { return inner_->kv_bytes_per_token(dtype); }
  // Allocating never touches the pool, so it takes no turn: a live switch
  // zeroes the next configuration's KV pool while this one keeps stepping.
  void allocate_kv_cache(int num_blocks, int block_size, DType dtype) override {
    inner_->allocate_kv_cache(num_blocks, block_size, dtype);
  }
  std::vector<float>& run(const SchedulerOutput& step) override;

 private:
  std::unique_ptr<Executor> inner_;
  PoolTurns& turns_;
};

}  // namespace tidal
