#include "engine/pool_turns.h"

namespace tidal {

namespace {

class Turn {
 public:
  explicit Turn(PoolTurns& turns) : turns_(turns) { turns_.acquire(); }
  ~Turn() { turns_.release(); }
  Turn(const Turn&) = delete;
  Turn& operator=(const Turn&) = delete;

 private:
  PoolTurns& turns_;
};

}  // namespace

void PoolTurns::acquire() {
  std::unique_lock<std::mutex> lock(mutex_);
  const uint64_t ticket = next_ticket_++;
  cv_.wait(lock, [&] { return serving_ == ticket; });
}

void PoolTurns::release() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++serving_;
  }
  cv_.notify_all();
}

std::vector<float>& TurnTakingExecutor::run(const SchedulerOutput& step) {
  const Turn turn(turns_);
  return inner_->run(step);
}

}  // namespace tidal
