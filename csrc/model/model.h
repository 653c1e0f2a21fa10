// A loaded Llama-family model: config plus weight views. Weights point into
// storage this object owns (a memory-mapped file, or buffers for converted
// tensors), so a Model is move-only and outlives every forward pass.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "model/weight.h"

namespace tidal {

struct LayerWeights {
  std::vector<float> attn_norm;  // [dim]
  Weight wq, wk, wv, wo;         // [n_heads*hd, dim], [n_kv*hd, dim] x2, [dim, n_heads*hd]
  std::vector<float> ffn_norm;   // [dim]
  Weight w_gate, w_up, w_down;   // [hidden, dim] x2, [dim, hidden]
};

// Holds the bytes behind Weight views (an mmap, or owned buffers).
class WeightStorage {
 public:
  virtual ~WeightStorage() = default;
};

struct Model {
  ModelConfig config;
  Weight token_embedding;        // [vocab, dim]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm; // [dim]
  Weight lm_head;                // [vocab, dim]; same view as token_embedding when tied
  std::vector<std::unique_ptr<WeightStorage>> storage;
};

}  // namespace tidal
