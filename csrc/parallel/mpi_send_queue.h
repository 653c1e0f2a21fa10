// Buffered MPI sends, pushed along by a thread of their own. MPI moves a
// message larger than its eager limit only while the *sender* is inside an
// MPI call, and a pipeline stage that has sent its activations goes straight
// back to computing the next micro-batch: without this thread the next stage
// would wait for that whole computation (no overlap at all), and over TCP or
// copy-based shared memory every large message would.
#pragma once

#ifdef TIDAL_HAVE_MPI

#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tidal {

class MpiSendQueue {
 public:
  MpiSendQueue() = default;
  // Stops the thread; drain() first to wait for the queued sends.
  ~MpiSendQueue();
  MpiSendQueue(const MpiSendQueue&) = delete;
  MpiSendQueue& operator=(const MpiSendQueue&) = delete;

  // Copies `data` and starts sending it; returns at once. Throws Error when
  // MPI refuses the send or an earlier one failed.
  void post(MPI_Comm comm, const void* data, size_t bytes, int dst);
  // Waits until every queued send has completed; false after `timeout`.
  bool drain(std::chrono::milliseconds timeout);
  // Why a send failed, or empty.
  std::string error() const;

 private:
  struct Pending {
    MPI_Request request;
    std::vector<uint8_t> bytes;
  };
  void loop();

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Pending> pending_;
  std::string error_;
  bool stop_ = false;
  std::thread thread_;  // started by the first post()
};

}  // namespace tidal

#endif  // TIDAL_HAVE_MPI
