#include "core/thread_pool.h"

#include <algorithm>
#include <exception>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace tidal {

namespace {

// A forward pass issues one job per op with only bookkeeping in between, so
// workers poll for the next job for a while (roughly 100 us) before paying
// for a futex sleep and wake-up.
constexpr int kSpinIterations = 1 << 12;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads > 0 ? n_threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()))) {
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  // Taking the mutex orders this wake-up after any worker that has checked
  // the generation but not yet blocked, so none can miss it.
  { std::lock_guard<std::mutex> lock(mutex_); }
  wake_.notify_all();

  // Workers hold a pointer to fn: an exception here must not unwind past
  // them while they still run it.
  std::exception_ptr error;
  try {
    fn(0, n_threads_);
  } catch (...) {
    error = std::current_exception();
  }
  for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) {
    if (i < kSpinIterations) {
      cpu_relax();
    } else {
      std::this_thread::yield();  // an oversubscribed machine may have descheduled a worker
    }
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (n == 1 || n_threads_ == 1) {
    fn(0, n);
    return;
  }
  run([&](int index, int count) {
    int64_t begin, end;
    split_range(n, index, count, &begin, &end);
    if (begin < end) fn(begin, end);
  });
}

// Jobs run on workers must not throw: there is no caller on this thread to
// hand the exception to, so it would terminate the process.
void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 0; gen == seen && i < kSpinIterations; ++i) {
      cpu_relax();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load(std::memory_order_relaxed)) return;
    (*job_)(index, n_threads_);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace tidal
