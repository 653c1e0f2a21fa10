// The NCCL communicator: one GPU per MPI rank. NCCL carries the tensor
// collectives (all-reduce, all-gather); the control plane (broadcast of step
// plans, barriers) and pipeline send/recv go over the MPI group it was built
// from, which also bootstraps NCCL's unique id. The engine's only backend is
// still the CPU, so buffers are host memory and are staged through device
// buffers here; a CUDA backend would hand device pointers straight to NCCL.
// Built only when CMake finds CUDA, NCCL and MPI (TIDAL_HAVE_NCCL).
#pragma once

#ifdef TIDAL_HAVE_NCCL

#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>

#include "parallel/mpi_communicator.h"

namespace tidal {

class NcclCommunicator : public Communicator {
 public:
  // Collective over `control`'s ranks; `device` is this rank's GPU.
  NcclCommunicator(std::unique_ptr<MpiCommunicator> control, int device);
  // The GPU of the process that is `local_rank` among those on its machine.
  static int device_for(int local_rank);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return control_->rank(); }
  int size() const override { return control_->size(); }
  // NCCL's own ring order: deterministic for a given topology, but not the
  // rank-order sum of the other implementations (last-bit differences).
  void all_reduce_sum(float* data, size_t count) override;
  void all_gather(const void* in, size_t bytes, void* out) override;
  void broadcast(void* data, size_t bytes, int root, Wait wait) override;
  void send(const void* data, size_t bytes, int dst) override;
  void recv(void* data, size_t bytes, int src) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;

 private:
  void* device_buffer(size_t bytes);  // grows, never shrinks
  void sync();

  std::unique_ptr<MpiCommunicator> control_;
  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* buffer_ = nullptr;
  size_t buffer_bytes_ = 0;
};

}  // namespace tidal

#endif  // TIDAL_HAVE_NCCL
