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

  // A device copy of `host`, valid until `slots` other distinct arrays have
  // been uploaded. The copy is ordered on `stream`, so kernels launched on
  // it afterwards see it and kernels launched before still read the old one.
  const int32_t* upload(std::span<const int32_t> host, cudaStream_t stream);

 private:
  struct Slot {
    std::vector<int32_t> host;
    DeviceBuffer device;
    uint64_t last_use = 0;
    bool valid = false;
  };
  std::vector<Slot> slots_;
  uint64_t clock_ = 0;
};

}  // namespace tidal::cuda
