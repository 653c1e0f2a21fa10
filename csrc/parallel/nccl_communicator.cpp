#include "parallel/nccl_communicator.h"

#ifdef TIDAL_HAVE_NCCL

#include <string>

#include "core/error.h"

namespace tidal {

namespace {

void check_cuda(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw Error(ErrorCode::kInternal, std::string(what) + ": " + cudaGetErrorString(rc));
}

void check_nccl(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess) throw Error(ErrorCode::kInternal, std::string(what) + ": " + ncclGetErrorString(rc));
}

}  // namespace

int NcclCommunicator::device_for(int local_rank) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    throw Error(ErrorCode::kUnsupported, "--comm nccl: no CUDA device is visible to this process");
  }
  return local_rank % count;
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<MpiCommunicator> control, int device)
    : control_(std::move(control)), device_(device) {
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  ncclUniqueId id;
  if (control_->rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  control_->broadcast(&id, sizeof id, 0, Wait::kBounded);
  check_nccl(ncclCommInitRank(&comm_, control_->size(), id, control_->rank()), "ncclCommInitRank");
  check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate");
}

NcclCommunicator::~NcclCommunicator() {
  cudaSetDevice(device_);
  if (buffer_) cudaFree(buffer_);
  if (stream_) cudaStreamDestroy(stream_);
  if (comm_) ncclCommDestroy(comm_);
}

void* NcclCommunicator::device_buffer(size_t bytes) {
  if (bytes > buffer_bytes_) {
    if (buffer_) check_cuda(cudaFree(buffer_), "cudaFree");
    buffer_ = nullptr;
    check_cuda(cudaMalloc(&buffer_, bytes), "cudaMalloc");
    buffer_bytes_ = bytes;
  }
  return buffer_;
}

void NcclCommunicator::sync() { check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

void NcclCommunicator::all_reduce_sum(float* data, size_t count) {
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");  // the device is per host thread
  const size_t bytes = count * sizeof(float);
  auto* d = static_cast<float*>(device_buffer(bytes));
  check_cuda(cudaMemcpyAsync(d, data, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
  check_nccl(ncclAllReduce(d, d, count, ncclFloat, ncclSum, comm_, stream_), "ncclAllReduce");
  check_cuda(cudaMemcpyAsync(data, d, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
  sync();
}

void NcclCommunicator::all_gather(const void* in, size_t bytes, void* out) {
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  const size_t total = bytes * size_t(size());
  auto* d = static_cast<uint8_t*>(device_buffer(total));
  uint8_t* mine = d + bytes * size_t(rank());
  check_cuda(cudaMemcpyAsync(mine, in, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
  check_nccl(ncclAllGather(mine, d, bytes, ncclUint8, comm_, stream_), "ncclAllGather");
  check_cuda(cudaMemcpyAsync(out, d, total, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
  sync();
}

void NcclCommunicator::broadcast(void* data, size_t bytes, int root, Wait wait) {
  control_->broadcast(data, bytes, root, wait);
}

void NcclCommunicator::send(const void* data, size_t bytes, int dst) { control_->send(data, bytes, dst); }

void NcclCommunicator::recv(void* data, size_t bytes, int src) { control_->recv(data, bytes, src); }

void NcclCommunicator::barrier() { control_->barrier(); }

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  return std::make_unique<NcclCommunicator>(control_->split_mpi(color, key), device_);
}

}  // namespace tidal

#endif  // TIDAL_HAVE_NCCL
