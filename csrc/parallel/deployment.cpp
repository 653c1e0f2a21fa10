#include "parallel/deployment.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "core/error.h"
#include "engine/model_runner.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_world.h"
#include "parallel/nccl_communicator.h"
#include "parallel/parallel_executor.h"

namespace tidal {

namespace {

// After a lost rank, how long the driver keeps going (so that the engine can
// end the affected requests and the server send their errors) before the
// MPI job is aborted.
constexpr auto kFlushDelay = std::chrono::milliseconds(2000);

int share_of_cores(int requested, int ranks_here) {
  if (requested > 0) return requested;
  const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, ranks_here));
}

}  // namespace

Deployment::Deployment(const Model& model, const ParallelConfig& config, int threads, MpiWorld* world)
    : model_(model), config_(config), world_(world) {
  check_parallel_config(model, config);
  if (config.comm == "local") {
    threads_per_rank_ = share_of_cores(threads, config.ranks_per_replica() * config.dp);
    if (config.ranks_per_replica() > 1) start_local_ranks();
    return;
  }
#ifndef TIDAL_HAVE_MPI
  throw Error(ErrorCode::kUnsupported, "--comm " + config.comm +
                                           ": this tidal was built without MPI (install libopenmpi-dev and rebuild)");
#else
#ifndef TIDAL_HAVE_NCCL
  if (config.comm == "nccl") {
    throw Error(ErrorCode::kUnsupported,
                "--comm nccl: this tidal was built without NCCL (building it needs the CUDA toolkit, NCCL and MPI)");
  }
#endif
  if (!world_) throw Error(ErrorCode::kInternal, "--comm " + config.comm + " needs the process's MPI world");
  start_mpi();
  threads_per_rank_ = share_of_cores(threads, world_->local_size() * config.dp);
#endif
}

Deployment::~Deployment() {
  // Normally the executors have stopped every rank already; this wakes any
  // that still wait (an executor never made, or one that failed).
  for (const auto& group : local_groups_) group->fail("the deployment is shutting down");
  for (std::thread& t : rank_threads_) t.join();
  replica_groups_.clear();  // before MPI_Finalize
}

Deployment::Device& Deployment::new_device() {
  devices_.push_back(std::make_unique<Device>(threads_per_rank_));
  return *devices_.back();
}

void Deployment::start_local_ranks() {
  const int ranks = config_.ranks_per_replica();
  for (int d = 0; d < config_.dp; ++d) {
    auto group = std::make_shared<LocalGroup>(ranks);
    local_groups_.push_back(group);
    for (int r = 1; r < ranks; ++r) {
      Device& device = new_device();
      rank_threads_.emplace_back([this, group, r, &device] {
        try {
          RankWorker worker(model_, config_, std::make_unique<LocalCommunicator>(group, r), device.backend);
          worker.serve();
        } catch (const std::exception& e) {
          // A failed rank must not leave its peers (and the driver) waiting.
          group->fail(std::string("local rank ") + std::to_string(r) + ": " + e.what());
        }
      });
    }
  }
}

void Deployment::start_mpi() {
#ifdef TIDAL_HAVE_MPI
  world_rank_ = world_->rank();
  const int ranks = config_.ranks_per_replica();
  if (ranks > world_->size()) {
    throw Error(ErrorCode::kInvalidArgument, "--comm " + config_.comm + " with tp * pp = " + std::to_string(ranks) +
                                                 " needs mpirun -np " + std::to_string(ranks) + " or more, got " +
                                                 std::to_string(world_->size()) + " processes");
  }
  std::unique_ptr<MpiCommunicator> group = world_->first_ranks(ranks);
  if (!group) {
    idle_ = true;
    return;
  }
  // Duplicates made in the same order on every process: one per replica, so
  // that replicas stepping at once never mix their messages.
  for (int d = 0; d < config_.dp && ranks > 1; ++d) {
#ifdef TIDAL_HAVE_NCCL
    if (config_.comm == "nccl") {
      replica_groups_.push_back(
          std::make_unique<NcclCommunicator>(group->dup(), NcclCommunicator::device_for(world_->local_rank())));
      continue;
    }
#endif
    replica_groups_.push_back(group->dup());
  }
#endif
}

std::vector<std::unique_ptr<Executor>> Deployment::executors() {
  if (!is_driver()) throw Error(ErrorCode::kInternal, "only the driver process runs executors");
  // Rank 0 of each replica exists once: its peers are already waiting for it.
  if (executors_made_) throw Error(ErrorCode::kInternal, "Deployment::executors() called twice");
  executors_made_ = true;
  std::vector<std::unique_ptr<Executor>> executors;
  for (int d = 0; d < config_.dp; ++d) {
    Device& device = new_device();
    if (config_.ranks_per_replica() == 1) {
      executors.push_back(std::make_unique<ModelRunner>(model_, device.backend));
      continue;
    }
    std::unique_ptr<Communicator> group;
    ParallelExecutor::FailureHandler on_failure;
    if (config_.comm == "local") {
      group = std::make_unique<LocalCommunicator>(local_groups_[size_t(d)], 0);
      on_failure = [g = local_groups_[size_t(d)]](const std::string& reason) { g->fail(reason); };
    } else {
      group = std::move(replica_groups_[size_t(d)]);
      on_failure = [world = world_](const std::string&) { world->fail_stop(kFlushDelay); };
    }
    auto rank0 = std::make_unique<RankWorker>(model_, config_, std::move(group), device.backend);
    executors.push_back(std::make_unique<ParallelExecutor>(model_.config, config_, std::move(rank0), on_failure));
  }
  return executors;
}

void Deployment::serve() {
#ifdef TIDAL_HAVE_MPI
  auto serve_replica = [this](size_t d, Device& device) {
    try {
      RankWorker worker(model_, config_, std::move(replica_groups_[d]), device.backend);
      worker.serve();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tidal: MPI rank %d failed: %s\n", world_rank_, e.what());
      world_->fail_stop(std::chrono::milliseconds(0));
    }
  };
  std::vector<std::thread> replicas;
  for (size_t d = 1; d < replica_groups_.size(); ++d) {
    replicas.emplace_back(serve_replica, d, std::ref(new_device()));
  }
  if (!replica_groups_.empty()) serve_replica(0, new_device());
  for (std::thread& t : replicas) t.join();
#endif
}

}  // namespace tidal
