// Everything one process runs for a --tp/--pp/--dp/--comm configuration:
// the communicators, a CPU device (thread pool + backend) per rank it hosts,
// and the ranks themselves. The only code that knows which communicator runs.
//
//   --comm local  every rank is a thread of this process; rank 0 of each
//                 replica runs on the engine's thread (replica threads with
//                 dp > 1), ranks 1.. on threads of their own.
//   --comm mpi    over an MpiWorld (`mpirun -np N`, N >= tp*pp): world
//   --comm nccl   rank r < tp*pp hosts rank r of every replica (one thread
//                 per replica); the other processes are idle for this
//                 deployment. Process 0 is the driver: it runs the engine
//                 (and the HTTP server) and rank 0 of every replica; the
//                 others serve() until it stops them. Every process
//                 constructs the deployment at once (mpi_world.h says how
//                 the driver orders that).
//
// With tp = pp = 1 each replica is a plain ModelRunner on its own device.
//
// Failures: a rank that dies or hangs makes the driver's step fail after
// --comm-timeout (or at once, for a local rank that threw). The replica is
// then stopped for good: its local ranks are woken and exit, and the engine
// serves on with the other replicas; an MPI job is aborted (MPI_Abort) a
// moment later so that error replies can still leave, and mpirun exits
// non-zero (a process holds a rank of every replica, so none is left).
// docs/PARALLELISM.md describes what clients see.
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/cpu_backend.h"
#include "engine/executor.h"
#include "model/model.h"
#include "parallel/communicator.h"
#include "parallel/local_communicator.h"
#include "parallel/parallel_config.h"

namespace tidal {

class MpiWorld;

class Deployment {
 public:
  // Checks that the model can be split this way and starts this process's
  // local worker ranks; for mpi and nccl, collective over `world` (which
  // must outlive the deployment). `threads` is per rank (0: this machine's
  // hardware threads shared out evenly). `model` must outlive the
  // deployment. Throws Error with a one-line reason.
  Deployment(const Model& model, const ParallelConfig& config, int threads, MpiWorld* world = nullptr);
  ~Deployment();
  Deployment(const Deployment&) = delete;
  Deployment& operator=(const Deployment&) = delete;

  // The process that runs the engine: world rank 0 (always, without MPI).
  bool is_driver() const { return world_rank_ == 0; }
  // Holds no rank of this deployment (an MPI process beyond tp * pp).
  bool idle() const { return idle_; }
  // Driver only, once: one executor per replica, for LLMEngine; they must be
  // destroyed before the deployment.
  std::vector<std::unique_ptr<Executor>> executors();
  // Other MPI processes: run this process's ranks until the driver stops
  // them (at once when idle).
  void serve();

 private:
  struct Device {
    explicit Device(int threads) : pool(threads), backend(pool) {}
    ThreadPool pool;
    CpuBackend backend;
  };
  Device& new_device();
  void start_local_ranks();
  void start_mpi();

  const Model& model_;
  ParallelConfig config_;
  MpiWorld* world_ = nullptr;
  int world_rank_ = 0;
  int threads_per_rank_ = 1;
  bool idle_ = false;
  bool executors_made_ = false;
  std::vector<std::unique_ptr<Communicator>> replica_groups_;  // MPI: this process's rank of each replica
  std::vector<std::shared_ptr<LocalGroup>> local_groups_;      // local: one per replica
  std::vector<std::unique_ptr<Device>> devices_;
  std::vector<std::thread> rank_threads_;
};

}  // namespace tidal
