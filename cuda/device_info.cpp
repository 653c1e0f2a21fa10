#include "cuda/device_info.h"

#include <cuda_runtime_api.h>

#include "cuda/cuda_check.h"

namespace tidal::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" / "no device" status
    return 0;
  }
  return n;
}

DeviceInfo current_device_info() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  DeviceInfo info;
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.compute_capability = 10 * prop.major + prop.minor;
  info.max_shared_per_block = prop.sharedMemPerBlockOptin;
  check(cudaMemGetInfo(&info.free_bytes, &info.total_bytes), "cudaMemGetInfo");
  return info;
}

}  // namespace tidal::cuda
