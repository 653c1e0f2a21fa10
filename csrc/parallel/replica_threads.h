// Runs one job per data-parallel replica at the same time: job(0) on the
// calling thread, the others on threads of their own. A step takes
// milliseconds, so the threads sleep on a condition variable between steps
// rather than spin (they would steal cores from the replicas' own pools).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tidal {

class ReplicaThreads {
 public:
  explicit ReplicaThreads(size_t n);
  ~ReplicaThreads();
  ReplicaThreads(const ReplicaThreads&) = delete;
  ReplicaThreads& operator=(const ReplicaThreads&) = delete;

  size_t size() const { return threads_.size() + 1; }
  // Calls job(i) for every i < size() concurrently and returns when all are
  // done, rethrowing the exception of the lowest-indexed job that threw.
  void run(const std::function<void(size_t)>& job);

 private:
  void loop(size_t index);

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t)>* job_ = nullptr;
  uint64_t generation_ = 0;
  size_t pending_ = 0;
  bool stop_ = false;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> threads_;
};

}  // namespace tidal
