// Copies weights to the device in the layout of cuda/device_layout.h.
#pragma once

#include <cstdint>

#include "cuda/device_buffer.h"
#include "model/weight.h"

namespace tidal::cuda {

// The device layout of a host matrix, built on the host: `out` receives
// w.bytes() bytes. Exposed so tests can check the layout without a GPU.
void repack_for_device(const Weight& w, uint8_t* out);

// Element (r, k) of a matrix in the device layout, read on the host (the
// tests' check of repack_for_device against dequantize_row).
float device_layout_element(const Weight& w_device_layout, int64_t r, int64_t k);

// One matrix in its own allocation. view.data is a device pointer.
struct DeviceWeight {
  Weight view;
  DeviceBuffer storage;
};

// Both uploads throw tidal::Error (kUnsupported) for the integer formats
// (I8, I8_G32, I4_G*, W8A16_G32, W4A16_G*), which only the CPU backend runs.
DeviceWeight upload_weight(const Weight& host);

// Copies a host matrix into `device` (which has room for w.bytes()) and
// returns the device view.
Weight upload_weight_to(const Weight& host, void* device);

}  // namespace tidal::cuda
