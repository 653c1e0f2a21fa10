#include "parallel/mpi_send_queue.h"

#ifdef TIDAL_HAVE_MPI

#include "core/error.h"

namespace tidal {

namespace {

// Between polls of sends still waiting for their receiver: short enough to
// add little latency, long enough to cost a waiting rank almost no CPU.
constexpr auto kPollEvery = std::chrono::microseconds(50);

}  // namespace

MpiSendQueue::~MpiSendQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    // Sends that never completed (their receiver is gone): the transport may
    // still read their buffers, so they are left allocated; the job is being
    // aborted anyway.
    if (!pending_.empty()) new std::deque<Pending>(std::move(pending_));
    pending_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void MpiSendQueue::post(MPI_Comm comm, const void* data, size_t bytes, int dst) {
  const auto* p = static_cast<const uint8_t*>(data);
  Pending send{MPI_REQUEST_NULL, std::vector<uint8_t>(p, p + bytes)};
  if (MPI_Isend(send.bytes.data(), int(bytes), MPI_BYTE, dst, 0, comm, &send.request) != MPI_SUCCESS) {
    throw Error(ErrorCode::kInternal, "MPI send to rank " + std::to_string(dst) + " failed");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (!error_.empty()) throw Error(ErrorCode::kInternal, error_);
  pending_.push_back(std::move(send));  // moving a vector keeps its buffer where MPI reads it
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  cv_.notify_all();
}

bool MpiSendQueue::drain(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return cv_.wait_for(lock, timeout, [this] { return pending_.empty() || !error_.empty(); }) && error_.empty();
}

std::string MpiSendQueue::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

void MpiSendQueue::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !pending_.empty(); });
    if (stop_) return;
    for (auto it = pending_.begin(); it != pending_.end();) {
      int done = 0;
      if (MPI_Test(&it->request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        error_ = "an MPI send failed";
        done = 0;
      }
      it = done ? pending_.erase(it) : it + 1;
    }
    cv_.notify_all();
    if (!pending_.empty() && error_.empty()) {
      lock.unlock();
      std::this_thread::sleep_for(kPollEvery);
      lock.lock();
    } else if (!error_.empty()) {
      return;
    }
  }
}

}  // namespace tidal

#endif  // TIDAL_HAVE_MPI
