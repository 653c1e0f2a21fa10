// Moves activations and bytes between the ranks of one parallel group. Three
// implementations exist — threads in one process (local_communicator.h), MPI
// processes (mpi_communicator.h) and NCCL GPUs (nccl_communicator.h) — and
// only the code that builds a deployment knows which one runs.
#pragma once

#include <cstddef>
#include <memory>

namespace tidal {

// How long a blocking operation may wait for its peers. kBounded gives up
// with Error(kInternal) once the communicator's timeout passes (a peer died
// or hung); kForever is for a worker waiting, idle, for its next command.
enum class Wait { kBounded, kForever };

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[i] = the sum over ranks of data[i], added in rank order (0 + 1 +
  // ...) so that every rank, and every implementation that can, gets
  // bit-identical values.
  virtual void all_reduce_sum(float* data, size_t count) = 0;
  // Writes every rank's `bytes` bytes into out, rank r's at r * bytes.
  virtual void all_gather(const void* in, size_t bytes, void* out) = 0;
  // Copies the root's bytes to every rank.
  virtual void broadcast(void* data, size_t bytes, int root, Wait wait) = 0;
  // Buffered: returns once `data` may be reused, without waiting for the
  // receiver, so that pipeline stages never deadlock on each other's sends.
  // Messages from one rank to another arrive in the order they were sent.
  virtual void send(const void* data, size_t bytes, int dst) = 0;
  // Receives the next message from `src`, which must be exactly `bytes` long.
  virtual void recv(void* data, size_t bytes, int src) = 0;
  virtual void barrier() = 0;
  // Collective over this group: ranks passing the same color form a new
  // group, ranked by (key, old rank).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
};

// out[i] = sum over r of gathered[r * count + i], in rank order: the one
// summation every all_reduce_sum built on all_gather shares.
void sum_in_rank_order(const float* gathered, int ranks, size_t count, float* out);

}  // namespace tidal
