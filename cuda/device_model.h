// A model's weights in device memory: every matrix in the layout of
// cuda/device_layout.h, norm vectors as F32 arrays, all in one allocation.
#pragma once

#include <vector>

#include "cuda/device_buffer.h"
#include "model/model.h"

namespace tidal::cuda {

struct DeviceLayerWeights {
  const float* attn_norm = nullptr;  // [dim], device
  Weight wq, wk, wv, wo;             // data on the device
  const float* ffn_norm = nullptr;
  Weight w_gate, w_up, w_down;
};

struct DeviceModel {
  ModelConfig config;
  Weight token_embedding;
  std::vector<DeviceLayerWeights> layers;
  const float* final_norm = nullptr;
  Weight lm_head;  // same device bytes as token_embedding when tied
  DeviceBuffer storage;
};

// Uploads every weight of `model` once; the host model may be dropped after.
DeviceModel upload_model(const Model& model);

}  // namespace tidal::cuda
