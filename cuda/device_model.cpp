#include "cuda/device_model.h"

#include <map>

#include "cuda/weight_upload.h"

namespace tidal::cuda {

namespace {

constexpr size_t kAlign = 256;  // keeps every matrix aligned for vector loads

size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Hands out consecutive aligned pieces of one device allocation. Matrices
// seen before (a tied LM head) get their first copy back.
class Placer {
 public:
  explicit Placer(uint8_t* base) : next_(base) {}

  Weight matrix(const Weight& host) {
    if (auto it = placed_.find(host.data); it != placed_.end()) return it->second;
    const Weight device = upload_weight_to(host, next_);
    next_ += aligned(host.bytes());
    placed_.emplace(host.data, device);
    return device;
  }

  const float* vector(const std::vector<float>& host) {
    auto* device = reinterpret_cast<float*>(next_);
    check(cudaMemcpy(device, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), "upload norm");
    next_ += aligned(host.size() * sizeof(float));
    return device;
  }

 private:
  uint8_t* next_;
  std::map<const uint8_t*, Weight> placed_;
};

}  // namespace

DeviceModel upload_model(const Model& model) {
  size_t bytes = aligned(model.token_embedding.bytes()) + aligned(model.final_norm.size() * sizeof(float));
  if (model.lm_head.data != model.token_embedding.data) bytes += aligned(model.lm_head.bytes());
  for (const LayerWeights& l : model.layers) {
    for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) bytes += aligned(w->bytes());
    bytes += aligned(l.attn_norm.size() * sizeof(float)) + aligned(l.ffn_norm.size() * sizeof(float));
  }

  DeviceModel d;
  d.config = model.config;
  d.storage = DeviceBuffer(bytes);
  Placer place(d.storage.as<uint8_t>());
  d.token_embedding = place.matrix(model.token_embedding);
  for (const LayerWeights& l : model.layers) {
    DeviceLayerWeights& dl = d.layers.emplace_back();
    dl.attn_norm = place.vector(l.attn_norm);
    dl.wq = place.matrix(l.wq);
    dl.wk = place.matrix(l.wk);
    dl.wv = place.matrix(l.wv);
    dl.wo = place.matrix(l.wo);
    dl.ffn_norm = place.vector(l.ffn_norm);
    dl.w_gate = place.matrix(l.w_gate);
    dl.w_up = place.matrix(l.w_up);
    dl.w_down = place.matrix(l.w_down);
  }
  d.final_norm = place.vector(model.final_norm);
  d.lm_head = place.matrix(model.lm_head);
  return d;
}

}  // namespace tidal::cuda
