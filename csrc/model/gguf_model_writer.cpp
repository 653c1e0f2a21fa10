// Q and K are written exactly as held. load_gguf uses them as stored because
// llama.cpp's HF converter already permuted their rows for adjacent-pair
// RoPE, and llama2.c checkpoints were trained with that RoPE: a file written
// here has the same convention as a llama.cpp conversion, and reloading it
// gives back the identical matrices.
#include "model/gguf_model_writer.h"

#include <map>

#include "core/error.h"
#include "model/gguf_writer.h"
#include "model/variant.h"

namespace tidal {

namespace {

// llama.cpp's llama_ftype for a file whose matrices are all of one type.
std::optional<uint32_t> llama_file_type(const std::string& storage) {
  static const std::map<std::string, uint32_t> kFileTypes = {
      {"f32", 0}, {"f16", 1}, {"q4_0", 2}, {"q4_1", 3}, {"q8_0", 7}, {"bf16", 32}};
  const auto it = kFileTypes.find(storage);
  return it == kFileTypes.end() ? std::nullopt : std::optional<uint32_t>(it->second);
}

// The llama.* keys llama.cpp and load_gguf read, for a base without GGUF
// metadata of its own.
void set_llama_config(GgufWriter& w, const ModelConfig& c) {
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", c.name);
  w.set_u32("llama.context_length", static_cast<uint32_t>(c.max_seq_len));
  w.set_u32("llama.embedding_length", static_cast<uint32_t>(c.dim));
  w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  w.set_u32("llama.block_count", static_cast<uint32_t>(c.n_layers));
  w.set_u32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  w.set_f32("llama.rope.freq_base", c.rope_theta);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", c.rms_eps);
  w.set_u32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));
}

// Keys that describe how the weights are stored, set for this file: the
// source's values would describe the source.
void set_storage_keys(GgufWriter& w, const Model& model, const VariantProvenance& provenance) {
  const std::string storage = describe_storage(model);
  if (const std::optional<uint32_t> file_type = llama_file_type(storage)) {
    w.set_u32("general.file_type", *file_type);
  } else {
    // No llama_ftype describes the integer formats or a mixed file, and any
    // value would claim a storage the file does not have.
    w.remove("general.file_type");
  }
  // ggml's quantization version only concerns its block formats.
  const bool has_ggml_blocks = storage.find("q8_0") != std::string::npos ||
                               storage.find("q4_0") != std::string::npos || storage.find("q4_1") != std::string::npos;
  if (!has_ggml_blocks) {
    w.remove("general.quantization_version");
  }
  for (const char* key :
       {kQuantTypeKey, kQuantVocabTypeKey, kQuantRowAlignKey, kVariantKey, kVariantBaseKey, kVariantDerivationKey}) {
    w.remove(key);
  }
  // An integer file names its layers' format, and its vocabulary matrices'
  // when they differ (check_int_storage made sure both are integer formats).
  const DType layer_type = model.layers.empty() ? model.token_embedding.type : model.layers[0].wq.type;
  if (dtype_is_int(layer_type)) {
    w.set_string(kQuantTypeKey, std::string(dtype_name(layer_type)));
    if (model.token_embedding.type != layer_type) {
      w.set_string(kQuantVocabTypeKey, std::string(dtype_name(model.token_embedding.type)));
    }
    w.set_u32(kQuantRowAlignKey, static_cast<uint32_t>(kIntRowAlign));
  }
  if (model.config.ffn_hadamard_block > 0) {
    w.set_u32(kFfnHadamardBlockKey, static_cast<uint32_t>(model.config.ffn_hadamard_block));
  } else {
    w.remove(kFfnHadamardBlockKey);
  }
  w.set_string(kVariantKey, provenance.variant);
  w.set_string(kVariantBaseKey, provenance.base);
  w.set_string(kVariantDerivationKey, provenance.derivation);
}

// A file with integer matrices records one format for the layers and one
// for the vocabulary matrices (set_storage_keys), so it can hold nothing else.
void check_int_storage(const Model& model, const std::string& path) {
  const DType vocab = model.token_embedding.type;
  const DType layer = model.layers.empty() ? vocab : model.layers[0].wq.type;
  bool any = dtype_is_int(vocab) || dtype_is_int(model.lm_head.type), uniform = model.lm_head.type == vocab;
  for (const LayerWeights& l : model.layers) {
    for (const Weight* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      any = any || dtype_is_int(m->type);
      uniform = uniform && m->type == layer;
    }
  }
  if (any && !(uniform && dtype_is_int(vocab) && dtype_is_int(layer))) {
    throw Error(ErrorCode::kInvalidArgument, path + ": integer-format matrices must have one type in the layers and "
                                                    "one (also an integer format) in the embedding and LM head to be written");
  }
}

void add_norm(GgufWriter& w, const std::string& name, const std::vector<float>& v) {
  w.add_tensor(name, {static_cast<int64_t>(v.size())}, DType::F32, reinterpret_cast<const uint8_t*>(v.data()),
               v.size() * sizeof(float));
}

// A matrix in a ggml type is one tensor [cols, rows]; one in an integer
// format is its codes as bytes [row bytes, rows] and its scales (gguf.h).
void add_matrix(GgufWriter& w, const std::string& name, const Weight& m) {
  if (!dtype_is_int(m.type)) {
    w.add_tensor(name, {m.cols, m.rows}, m.type, m.data, m.bytes());
    return;
  }
  w.add_tensor(name, {static_cast<int64_t>(m.row_bytes()), m.rows}, DType::I8, m.data, m.bytes());
  w.add_tensor(name + kScaleSuffix, {dtype_scales_per_row(m.type, m.cols), m.rows}, DType::F32,
               reinterpret_cast<const uint8_t*>(m.scales), m.scale_bytes());
}

}  // namespace

void write_model_gguf(const Model& model, const GgufFile* source, const VariantProvenance& provenance,
                      const std::string& path) {
  // describe_storage joins distinct types with '+'.
  check_int_storage(model, path);
  GgufWriter w;
  if (source != nullptr) {
    w.copy_metadata(*source);
  } else {
    set_llama_config(w, model.config);
  }
  set_storage_keys(w, model, provenance);

  const bool tied = model.lm_head.data == model.token_embedding.data;
  add_matrix(w, "token_embd.weight", model.token_embedding);
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const LayerWeights& layer = model.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    add_norm(w, p + "attn_norm.weight", layer.attn_norm);
    add_matrix(w, p + "attn_q.weight", layer.wq);
    add_matrix(w, p + "attn_k.weight", layer.wk);
    add_matrix(w, p + "attn_v.weight", layer.wv);
    add_matrix(w, p + "attn_output.weight", layer.wo);
    add_norm(w, p + "ffn_norm.weight", layer.ffn_norm);
    add_matrix(w, p + "ffn_gate.weight", layer.w_gate);
    add_matrix(w, p + "ffn_up.weight", layer.w_up);
    add_matrix(w, p + "ffn_down.weight", layer.w_down);
  }
  add_norm(w, "output_norm.weight", model.final_norm);
  if (!tied) add_matrix(w, "output.weight", model.lm_head);
  w.write(path);
}

}  // namespace tidal
