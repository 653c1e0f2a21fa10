// Integer metadata (token ids, positions, slot mappings, block tables,
// attention work lists) is produced on the host by the scheduler. Every
// layer of a forward pass asks for the same arrays, so this keeps the device
// copies of the last few distinct arrays and uploads only when the contents
// change: one copy per array per step instead of one per layer.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>
#include <vector>

#include "cuda/device_buffer.h"

namespace tidal::cuda {

class IndexUploader {
 public:
  explicit IndexUploader(int slots = 8) : slots_(size_t(slots)) {}
  ~IndexUploader();
  IndexUploader(const IndexUploader&) = delete;
  IndexUploader& operator=(const IndexUploader&) = delete;

  // A device copy of `host` (nullptr when empty), valid until `slots` other distinct arrays have
  // been uploaded. The copy is ordered on `stream`: kernels launched on it
  // afterwards see the new contents, kernels launched before the old.
  const int32_t* upload(std::span<const int32_t> host, cudaStream_t stream);

 private:
  // The host side is pinned, so the copy is truly asynchronous (a pageable
  // source would make every upload wait for the stream to drain); `copied`
  // marks when the pinned bytes may be overwritten.
  struct Slot {
    int32_t* pinned = nullptr;
    size_t capacity = 0, size = 0;
    DeviceBuffer device;
    cudaEvent_t copied = nullptr;
    uint64_t last_use = 0;
    bool valid = false;
  };
  std::vector<Slot> slots_;
  uint64_t clock_ = 0;
};

}  // namespace tidal::cuda
