#include "cuda/index_upload.h"

#include <algorithm>
#include <cstring>

#include "cuda/cuda_check.h"

namespace tidal::cuda {

IndexUploader::~IndexUploader() {
  for (Slot& s : slots_) {
    if (s.copied != nullptr) {
      cudaEventSynchronize(s.copied);
      cudaEventDestroy(s.copied);
    }
    if (s.pinned != nullptr) cudaFreeHost(s.pinned);
  }
}

const int32_t* IndexUploader::upload(std::span<const int32_t> host, cudaStream_t stream) {
  if (host.empty()) return nullptr;
  ++clock_;
  for (Slot& s : slots_) {
    if (s.valid && s.size == host.size() && std::memcmp(s.pinned, host.data(), host.size_bytes()) == 0) {
      s.last_use = clock_;
      return s.device.as<int32_t>();
    }
  }
  Slot& s = *std::min_element(slots_.begin(), slots_.end(),
                              [](const Slot& a, const Slot& b) { return a.last_use < b.last_use; });
  if (s.copied == nullptr) check(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming), "upload event");
  check(cudaEventSynchronize(s.copied), "previous upload");  // its pinned bytes may still be in flight
  s.valid = false;
  if (host.size() > s.capacity) {
    if (s.pinned != nullptr) check(cudaFreeHost(s.pinned), "cudaFreeHost");
    s.pinned = nullptr;
    s.capacity = std::max(host.size(), 2 * s.capacity);
    check(cudaMallocHost(reinterpret_cast<void**>(&s.pinned), s.capacity * sizeof(int32_t)), "cudaMallocHost");
    // A fresh device buffer too (the old one may still be read by queued
    // kernels; DeviceBuffer's cudaFree waits for them).
    s.device = DeviceBuffer(s.capacity * sizeof(int32_t));
  }
  std::copy(host.begin(), host.end(), s.pinned);
  s.size = host.size();
  check(cudaMemcpyAsync(s.device.data(), s.pinned, host.size_bytes(), cudaMemcpyHostToDevice, stream),
        "upload indices");
  check(cudaEventRecord(s.copied, stream), "upload event");
  s.last_use = clock_;
  s.valid = true;
  return s.device.as<int32_t>();
}

}  // namespace tidal::cuda
