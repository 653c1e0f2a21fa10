// Hyper-parameters of a Llama-family decoder, as read from a checkpoint.
#pragma once

#include <cstdint>
#include <string>

namespace tidal {

struct ModelConfig {
  std::string name;        // human-readable, from metadata or file name
  int dim = 0;             // embedding width
  int hidden_dim = 0;      // FFN inner width
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;      // < n_heads means grouped-query attention
  int head_dim = 0;        // dim / n_heads
  int vocab_size = 0;
  int max_seq_len = 0;     // context length the model was trained for
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;
  bool tied_embeddings = false;  // LM head reuses the token embedding
  // > 0: the FFN activation silu(gate) * up is rotated by a block Hadamard
  // transform of this width (a power of two dividing hidden_dim) before
  // w_down, whose columns were rotated to match (model/rotation.h). 0: none.
  int ffn_hadamard_block = 0;
};

}  // namespace tidal
