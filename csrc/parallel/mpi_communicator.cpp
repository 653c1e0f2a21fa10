#include "parallel/mpi_communicator.h"

#ifdef TIDAL_HAVE_MPI

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>

#include "core/error.h"

namespace tidal {

namespace {

using Clock = std::chrono::steady_clock;

// Within a step, messages arrive within microseconds to a stage's compute
// time: poll hot for a while, then sleep in short naps (an idle worker, or
// a long prefill on the other stage, must not burn a core).
constexpr auto kSpinTime = std::chrono::milliseconds(2);
constexpr auto kNap = std::chrono::microseconds(50);
constexpr auto kIdleNap = std::chrono::milliseconds(1);
constexpr auto kIdleAfter = std::chrono::milliseconds(200);
// How often a waiting rank checks that its peers on this machine still run.
constexpr auto kWatchEvery = std::chrono::milliseconds(20);

int as_count(size_t bytes) {
  if (bytes > size_t(INT_MAX)) throw Error(ErrorCode::kUnsupported, "MPI message larger than 2 GiB");
  return int(bytes);
}

}  // namespace

std::string PeerWatch::gone() const {
  for (const Peer& p : peers_) {
    if (::kill(p.pid, 0) != 0 && errno == ESRCH) {
      return "MPI rank " + std::to_string(p.rank) + " (pid " + std::to_string(p.pid) + ") exited";
    }
  }
  return {};
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::chrono::milliseconds timeout,
                                 std::shared_ptr<const PeerWatch> watch)
    : comm_(comm), timeout_(timeout), watch_(std::move(watch)) {
  // Errors come back as return codes (turned into exceptions), not aborts.
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  // After a failure a peer may never take our sends; the session aborts the
  // job instead of waiting for them.
  if (!failure_.empty()) return;
  if (!sends_.drain(timeout_)) {
    std::fprintf(stderr, "tidal: MPI rank %d: sends still undelivered at shutdown\n", rank_);
    return;
  }
  MPI_Comm_free(&comm_);
}

void MpiCommunicator::throw_if_failed() const {
  if (!failure_.empty()) throw Error(ErrorCode::kInternal, failure_);
  const std::string send_error = sends_.error();
  if (!send_error.empty()) throw Error(ErrorCode::kInternal, "MPI rank " + std::to_string(rank_) + ": " + send_error);
}

void MpiCommunicator::check(int rc, const std::string& what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  failure_ = "MPI rank " + std::to_string(rank_) + ": " + what + " failed: " + std::string(text, size_t(len));
  throw Error(ErrorCode::kInternal, failure_);
}

void MpiCommunicator::wait(MPI_Request& request, MPI_Status* status, Wait wait, const std::string& what) {
  const auto start = Clock::now();
  auto watched = start;
  for (;;) {
    int done = 0;
    check(MPI_Test(&request, &done, status), what);
    if (done) return;
    const auto now = Clock::now();
    const auto waited = now - start;
    if (wait == Wait::kBounded && waited > timeout_) {
      failure_ = "MPI rank " + std::to_string(rank_) + ": " + what + " got no answer within " +
                 std::to_string(timeout_.count() / 1000.0) + " s (a rank died or hung)";
      throw Error(ErrorCode::kInternal, failure_);
    }
    if (watch_ && now - watched > kWatchEvery) {
      watched = now;
      const std::string gone = watch_->gone();
      if (!gone.empty()) {
        failure_ = gone + " while MPI rank " + std::to_string(rank_) + " waited for " + what;
        throw Error(ErrorCode::kInternal, failure_);
      }
    }
    if (waited > kIdleAfter) {
      std::this_thread::sleep_for(kIdleNap);
    } else if (waited > kSpinTime) {
      std::this_thread::sleep_for(kNap);
    }
  }
}

void MpiCommunicator::all_reduce_sum(float* data, size_t count) {
  gathered_.resize(count * size_t(size_));
  all_gather(data, count * sizeof(float), gathered_.data());
  sum_in_rank_order(gathered_.data(), size_, count, data);
}

void MpiCommunicator::all_gather(const void* in, size_t bytes, void* out) {
  throw_if_failed();
  MPI_Request request;
  check(MPI_Iallgather(in, as_count(bytes), MPI_BYTE, out, as_count(bytes), MPI_BYTE, comm_, &request), "all_gather");
  this->wait(request, MPI_STATUS_IGNORE, Wait::kBounded, "all_gather");
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root, Wait wait) {
  throw_if_failed();
  MPI_Request request;
  check(MPI_Ibcast(data, as_count(bytes), MPI_BYTE, root, comm_, &request), "broadcast");
  this->wait(request, MPI_STATUS_IGNORE, wait, "broadcast from rank " + std::to_string(root));
}

void MpiCommunicator::send(const void* data, size_t bytes, int dst) {
  throw_if_failed();
  as_count(bytes);
  sends_.post(comm_, data, bytes, dst);
}

void MpiCommunicator::recv(void* data, size_t bytes, int src) {
  throw_if_failed();
  MPI_Request request;
  MPI_Status status;
  const std::string what = "receive from rank " + std::to_string(src);
  check(MPI_Irecv(data, as_count(bytes), MPI_BYTE, src, 0, comm_, &request), what);
  try {
    wait(request, &status, Wait::kBounded, what);
  } catch (const Error&) {
    MPI_Cancel(&request);  // `data` must not be written after we return
    MPI_Request_free(&request);
    throw;
  }
  int got = 0;
  MPI_Get_count(&status, MPI_BYTE, &got);
  if (size_t(got) != bytes) {
    throw Error(ErrorCode::kInternal, "MPI rank " + std::to_string(rank_) + " expected " + std::to_string(bytes) +
                                          " bytes from rank " + std::to_string(src) + ", got " + std::to_string(got));
  }
}

void MpiCommunicator::barrier() {
  throw_if_failed();
  MPI_Request request;
  check(MPI_Ibarrier(comm_, &request), "barrier");
  wait(request, MPI_STATUS_IGNORE, Wait::kBounded, "barrier");
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) { return split_mpi(color, key); }

std::unique_ptr<MpiCommunicator> MpiCommunicator::split_mpi(int color, int key) {
  throw_if_failed();
  MPI_Comm part;
  check(MPI_Comm_split(comm_, color, key, &part), "split");
  return std::make_unique<MpiCommunicator>(part, timeout_, watch_);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::dup() const {
  MPI_Comm copy;
  if (MPI_Comm_dup(comm_, &copy) != MPI_SUCCESS) throw Error(ErrorCode::kInternal, "MPI_Comm_dup failed");
  return std::make_unique<MpiCommunicator>(copy, timeout_, watch_);
}

MpiSession::MpiSession() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) throw Error(ErrorCode::kInternal, "MPI is already initialized");
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
    throw Error(ErrorCode::kInternal, "MPI_Init_thread failed");
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
  if (provided < MPI_THREAD_MULTIPLE) {
    MPI_Finalize();
    throw Error(ErrorCode::kUnsupported, "this MPI library does not support MPI_THREAD_MULTIPLE");
  }
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank_);
  MPI_Comm_size(local, &local_size_);
  const int mine[2] = {world_rank_, int(getpid())};
  std::vector<int> all(2 * size_t(local_size_));
  MPI_Allgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, local);
  MPI_Comm_free(&local);
  std::vector<PeerWatch::Peer> peers;
  for (int i = 0; i < local_size_; ++i)
    if (i != local_rank_) peers.push_back({all[2 * size_t(i)], all[2 * size_t(i) + 1]});
  watch_ = std::make_shared<PeerWatch>(std::move(peers));
}

MpiSession::~MpiSession() {
  bool failed;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ending_ = true;
    failed = failed_;
    cv_.notify_all();
  }
  if (aborter_.joinable()) aborter_.join();
  // Finalize is collective: with a peer gone it could wait forever.
  if (failed) MPI_Abort(MPI_COMM_WORLD, 1);
  MPI_Finalize();
}

std::string MpiSession::host() const {
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(name, &len);
  return std::string(name, size_t(len));
}

std::unique_ptr<MpiCommunicator> MpiSession::world(std::chrono::milliseconds timeout) const {
  MPI_Comm copy;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &copy) != MPI_SUCCESS) throw Error(ErrorCode::kInternal, "MPI_Comm_dup failed");
  return std::make_unique<MpiCommunicator>(copy, timeout, watch_);
}

void MpiSession::fail_stop(std::chrono::milliseconds delay) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (failed_) return;
  failed_ = true;
  aborter_ = std::thread([this, delay] {
    std::unique_lock<std::mutex> lock(mutex_);
    if (cv_.wait_for(lock, delay, [this] { return ending_; })) return;  // the destructor aborts
    std::fprintf(stderr, "tidal: MPI rank %d lost a peer: aborting the job\n", world_rank_);
    MPI_Abort(MPI_COMM_WORLD, 1);
  });
}

}  // namespace tidal

#endif  // TIDAL_HAVE_MPI
