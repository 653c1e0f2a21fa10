// The MPI communicator: ranks are processes started by OpenMPI's mpirun, on
// one machine or many (its host file). Every wait polls a non-blocking
// request, so that a peer which died or hung turns into Error(kInternal)
// after the timeout instead of a hang, and an idle worker sleeps instead of
// spinning a core. Built only when CMake finds MPI (TIDAL_HAVE_MPI).
#pragma once

#ifdef TIDAL_HAVE_MPI

#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/mpi_send_queue.h"

namespace tidal {

// Notices, long before any timeout, that another process of the job on this
// machine has exited: OpenMPI's shared-memory transport never reports a
// dead peer, it just never answers. (Peers on other machines are caught by
// the timeout, or by the TCP transport's errors.)
class PeerWatch {
 public:
  struct Peer {
    int rank;  // in MPI_COMM_WORLD
    int pid;
  };
  explicit PeerWatch(std::vector<Peer> peers) : peers_(std::move(peers)) {}
  // "MPI rank R (pid P) exited" for the first peer found gone, else empty.
  std::string gone() const;

 private:
  std::vector<Peer> peers_;
};

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (a duplicate, never MPI_COMM_WORLD itself).
  MpiCommunicator(MPI_Comm comm, std::chrono::milliseconds timeout, std::shared_ptr<const PeerWatch> watch);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(float* data, size_t count) override;
  void all_gather(const void* in, size_t bytes, void* out) override;
  void broadcast(void* data, size_t bytes, int root, Wait wait) override;
  void send(const void* data, size_t bytes, int dst) override;
  void recv(void* data, size_t bytes, int src) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;

  // split() with the concrete type (the NCCL communicator builds on it).
  std::unique_ptr<MpiCommunicator> split_mpi(int color, int key);
  // A duplicate of this group (one per data-parallel replica, so replicas
  // never see each other's messages).
  std::unique_ptr<MpiCommunicator> dup() const;
  MPI_Comm handle() const { return comm_; }

 private:
  // Polls `request` until it completes; throws (and marks this communicator
  // failed) when a bounded wait outlasts the timeout.
  void wait(MPI_Request& request, MPI_Status* status, Wait wait, const std::string& what);
  void check(int rc, const std::string& what);
  void throw_if_failed() const;

  MPI_Comm comm_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<const PeerWatch> watch_;
  int rank_ = 0, size_ = 1;
  std::string failure_;
  MpiSendQueue sends_;
  std::vector<float> gathered_;
};

// MPI_Init / MPI_Finalize for the process, with the thread level the
// data-parallel replicas need (each replica's ranks talk from their own
// thread), and the fail-stop policy: a process that has lost a peer aborts
// the whole job, so that mpirun exits non-zero and a supervisor restarts it.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();  // MPI_Finalize, or MPI_Abort once fail_stop() was called
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }  // among the ranks on this machine
  int local_size() const { return local_size_; }
  std::string host() const;
  std::unique_ptr<MpiCommunicator> world(std::chrono::milliseconds timeout) const;

  // Aborts the job `delay` from now (at once if the session ends first).
  // The delay lets error replies to clients leave before the process dies.
  void fail_stop(std::chrono::milliseconds delay);

 private:
  int world_rank_ = 0, world_size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::shared_ptr<const PeerWatch> watch_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool failed_ = false, ending_ = false;
  std::thread aborter_;
};

}  // namespace tidal

#endif  // TIDAL_HAVE_MPI
