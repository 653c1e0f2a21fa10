// The MPI job a process belongs to when a model runs over --comm mpi or
// nccl: one MPI session for the process's life, and a control channel on
// which the driver (world rank 0) orders every other process to build its
// part of each deployment the driver builds -- the first one, and each one
// a live switch prepares while the previous one still serves. Worker
// processes only follow orders (serve_orders) until the driver quits.
//
// A deployment of tp * pp ranks per replica takes world ranks 0 .. tp*pp-1
// (each hosting its rank of every replica); the other processes stay idle
// for it. So `mpirun -np 2` can run tp2, pp2, tp2 x dp2 or pp2 x dp2, and a
// one-rank configuration runs on the driver alone with the worker idle.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "parallel/parallel_config.h"

namespace tidal {

class MpiSession;
class MpiCommunicator;

// What every process builds: the weights (each derives a variant itself
// from the base it loaded) and the layout.
struct DeployOrder {
  std::string variant = "base";
  ParallelConfig layout;
};

class MpiWorld {
 public:
  // Joins the job (MPI_Init). `timeout` bounds every wait on a peer. Throws
  // Error(kUnsupported) when tidal was built without MPI.
  explicit MpiWorld(std::chrono::milliseconds timeout);
  ~MpiWorld();  // the driver first tells every worker to quit
  MpiWorld(const MpiWorld&) = delete;
  MpiWorld& operator=(const MpiWorld&) = delete;

  bool is_driver() const { return rank_ == 0; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const;  // among the processes on this machine
  int local_size() const;
  // Ends the whole job `delay` from now: a rank was lost (see deployment.h).
  void fail_stop(std::chrono::milliseconds delay);

  // Driver: orders every worker to build its part of a deployment. Then
  // every process, the driver too, calls ready() and, unless it threw,
  // constructs the Deployment (whose constructor is collective).
  void announce(const DeployOrder& order);
  // Collective: `error` is why this process could not get ready ("" when
  // it is). Throws Error with the first process's failure, so that all of
  // them give the deployment up together.
  void ready(const std::string& error);
  // Collective over the world: the group of world ranks 0 .. ranks-1, or
  // nullptr on the other processes.
  std::unique_ptr<MpiCommunicator> first_ranks(int ranks);

  // Workers: follows the driver's orders until it quits. `build` gets each
  // order and must make the same collective calls as the driver.
  void serve_orders(const std::function<void(const DeployOrder&)>& build);

 private:
  std::chrono::milliseconds timeout_;
  int rank_ = 0, size_ = 1;
  std::unique_ptr<MpiSession> session_;
  std::unique_ptr<MpiCommunicator> control_;  // orders and readiness, never steps
};

}  // namespace tidal
