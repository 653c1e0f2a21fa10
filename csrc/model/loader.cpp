#include "model/loader.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/aligned_vector.h"
#include "core/error.h"
#include "core/fwht.h"
#include "model/quantize_matrix.h"

namespace tidal {

Model load_model(const std::string& path, const LoadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, path + ": cannot open model file");
  char magic[4] = {};
  in.read(magic, sizeof(magic));
  if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return load_gguf(path, options);
  if (std::filesystem::path(path).extension() == ".bin") return load_llama2c(path, options);
  throw Error(ErrorCode::kInvalidArgument, path + ": unknown model format (expected GGUF or a llama2.c .bin)");
}

void validate_config(const ModelConfig& c, const std::string& path) {
  auto fail = [&](const std::string& what) { throw Error(ErrorCode::kCorrupt, path + ": invalid config: " + what); };
  if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
      c.vocab_size <= 0 || c.max_seq_len <= 0) {
    fail("dim " + std::to_string(c.dim) + ", hidden " + std::to_string(c.hidden_dim) + ", layers " +
         std::to_string(c.n_layers) + ", heads " + std::to_string(c.n_heads) + ", kv heads " +
         std::to_string(c.n_kv_heads) + ", vocab " + std::to_string(c.vocab_size) + ", context " +
         std::to_string(c.max_seq_len) + " must all be positive");
  }
  if (c.dim % c.n_heads != 0 || c.head_dim != c.dim / c.n_heads) {
    fail("dim " + std::to_string(c.dim) + " is not n_heads " + std::to_string(c.n_heads) + " x head_dim " +
         std::to_string(c.head_dim));
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    fail("n_heads " + std::to_string(c.n_heads) + " is not a multiple of n_kv_heads " + std::to_string(c.n_kv_heads));
  }
  // RoPE rotates pairs of features.
  if (c.head_dim % 2 != 0) fail("head_dim " + std::to_string(c.head_dim) + " is odd");
  if (c.ffn_hadamard_block != 0 && !is_hadamard_block(c.ffn_hadamard_block, c.hidden_dim)) {
    fail("FFN Hadamard block " + std::to_string(c.ffn_hadamard_block) +
         " is not a power of two dividing the FFN width " + std::to_string(c.hidden_dim));
  }
  if (!(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta)) fail("rope theta must be positive");
  if (!(c.rms_eps > 0.0f) || !std::isfinite(c.rms_eps)) fail("rms epsilon must be positive");
}

namespace {

// Owns the copies made by convert_weights_to_f32 and align_float_weights.
// Each inner vector's buffer stays put when the outer vector grows, so
// views stay valid.
struct CopiedWeights final : WeightStorage {
  std::vector<AlignedVector<uint8_t>> buffers;
};

// Every distinct matrix of the model once (a tied LM head is the embedding).
template <typename Fn>
void for_each_distinct_matrix(Model& model, Fn&& fn) {
  const bool tied = model.lm_head.data == model.token_embedding.data;
  fn(model.token_embedding);
  if (tied) {
    model.lm_head = model.token_embedding;
  } else {
    fn(model.lm_head);
  }
  for (LayerWeights& layer : model.layers) {
    for (Weight* w : {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_gate, &layer.w_up, &layer.w_down}) fn(*w);
  }
  if (tied) model.lm_head = model.token_embedding;
}

}  // namespace

void convert_weights_to_f32(Model& model) {
  auto storage = std::make_unique<CopiedWeights>();
  for_each_distinct_matrix(model, [&](Weight& w) {
    if (w.type == DType::F32) return;
    AlignedVector<uint8_t>& buf = storage->buffers.emplace_back(static_cast<size_t>(w.rows * w.cols) * sizeof(float));
    auto* rows = reinterpret_cast<float*>(buf.data());
    for (int64_t r = 0; r < w.rows; ++r) dequantize_weight_row(w, r, rows + r * w.cols);
    w = Weight{DType::F32, w.rows, w.cols, buf.data()};
  });
  // The original storage stays: F32 tensors of the file are still viewed in place.
  if (!storage->buffers.empty()) model.storage.push_back(std::move(storage));
}

void align_float_weights(Model& model) {
  auto storage = std::make_unique<CopiedWeights>();
  for_each_distinct_matrix(model, [&](Weight& w) {
    const bool vector_rows = w.type == DType::F32 || w.type == DType::F16 || w.type == DType::BF16;
    if (!vector_rows || reinterpret_cast<uintptr_t>(w.data) % kSimdAlignment == 0) return;
    AlignedVector<uint8_t>& buf = storage->buffers.emplace_back(w.data, w.data + w.bytes());
    w.data = buf.data();
  });
  if (!storage->buffers.empty()) model.storage.push_back(std::move(storage));
}

}  // namespace tidal
