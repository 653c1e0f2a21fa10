// Whether a CUDA device can be used here, and what it is.
#pragma once

#include <cstddef>
#include <string>

namespace tidal::cuda {

// Number of usable devices; 0 when there is no device or no driver (the
// runtime's error is swallowed: a GPU-less machine is a normal case).
int device_count();

struct DeviceInfo {
  std::string name;
  int sm_count = 0;
  int compute_capability = 0;  // 10 * major + minor
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  size_t max_shared_per_block = 0;  // with the opt-in for large dynamic shared memory
};

// The current device. Throws tidal::Error when there is none.
DeviceInfo current_device_info();

}  // namespace tidal::cuda
