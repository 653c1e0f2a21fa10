// A Llama forward pass on the CUDA backend, for the end-to-end tests: the
// same op sequence as LlamaForward (csrc/model/llama_forward.cpp), with the
// activations in device buffers and the KV cache a CudaKvCache. It exists
// because LlamaForward keeps activations in host vectors and takes a host
// KvCache; docs/CUDA.md describes the interface change that would let
// LlamaForward drive CudaBackend itself and retire this copy.
#pragma once

#include <cstdint>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/device_model.h"

namespace tidal::cuda::test {

class DeviceForward {
 public:
  DeviceForward(const DeviceModel& model, CudaBackend& backend) : model_(model), backend_(backend) {}

  // tokens and meta on the host (as the scheduler makes them); writes the
  // logits of logits_rows to `logits` (device, [rows][vocab]).
  void forward(CudaKvCache& cache, const int32_t* tokens, const AttentionMeta& meta,
               const std::vector<int32_t>& logits_rows, float* logits);

 private:
  void reserve(int n_tokens);

  const DeviceModel& model_;
  CudaBackend& backend_;
  int capacity_ = 0;
  DeviceBuffer x_, h_, q_, k_, v_, attn_, gate_, up_, last_;
};

}  // namespace tidal::cuda::test
