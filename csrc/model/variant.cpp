#include "model/variant.h"

#include <algorithm>
#include <array>

#include "core/error.h"
#include "model/quantize_matrix.h"
#include "model/rotation.h"

namespace tidal {

namespace {

const std::array<VariantSpec, 13> kVariants = {{
    {"f32", DType::F32},
    {"f16", DType::F16},
    {"bf16", DType::BF16},
    {"int8", DType::I8},
    {"int8-rot", DType::I8, true},
    {"int8-g32", DType::I8_G32},
    {"int8-g32-rot", DType::I8_G32, true},
    {"int4-g32", DType::I4_G32},
    {"int4-g64", DType::I4_G64},
    {"int4-g128", DType::I4_G128},
    {"w8a16-g32", DType::W8A16_G32},
    {"w4a16-g32", DType::W4A16_G32, false, DType::W8A16_G32},
    {"w4a16-g128", DType::W4A16_G128, false, DType::W8A16_G32},
}};

std::string accepted_names() {
  std::string names;
  for (const VariantSpec& v : kVariants) names += (names.empty() ? "" : ", ") + v.name;
  return names;
}

// Every matrix of the model, the tied LM head once.
template <typename ModelT, typename Fn>
void for_each_matrix(ModelT& model, Fn&& fn) {
  const bool tied = model.lm_head.data == model.token_embedding.data;
  fn(model.token_embedding);
  if (!tied) fn(model.lm_head);
  for (auto& layer : model.layers) {
    for (auto* w : {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_gate, &layer.w_up, &layer.w_down}) fn(*w);
  }
}

}  // namespace

std::optional<VariantSpec> parse_variant(std::string_view name) {
  for (const VariantSpec& v : kVariants) {
    if (v.name == name) return v;
  }
  return std::nullopt;
}

std::vector<VariantSpec> parse_variant_list(std::string_view list) {
  std::vector<VariantSpec> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string_view item = list.substr(start, comma - start);
    const auto spec = parse_variant(item);
    if (!spec) {
      throw Error(ErrorCode::kInvalidArgument,
                  "unknown variant '" + std::string(item) + "' (expected one of: " + accepted_names() + ")");
    }
    out.push_back(*spec);
    start = comma + 1;
  }
  return out;
}

std::string describe_storage(const Model& model) {
  // Distinct types in first-seen order: "q4_1+q8_0" says more than "mixed".
  std::vector<std::string> kinds;
  for_each_matrix(model, [&](const Weight& w) {
    const std::string name(dtype_name(w.type));
    if (std::find(kinds.begin(), kinds.end(), name) == kinds.end()) kinds.push_back(name);
  });
  std::string out;
  for (const std::string& k : kinds) out += (out.empty() ? "" : "+") + k;
  return out;
}

size_t model_weight_bytes(const Model& model) {
  size_t bytes = 0;
  for_each_matrix(model, [&](const Weight& w) { bytes += w.bytes() + w.scale_bytes(); });
  for (const LayerWeights& layer : model.layers) bytes += (layer.attn_norm.size() + layer.ffn_norm.size()) * sizeof(float);
  return bytes + model.final_norm.size() * sizeof(float);
}

size_t variant_weight_bytes(const Model& base, const VariantSpec& spec) {
  size_t bytes = 0;
  for_each_matrix(base, [&](const Weight& w) {
    const bool vocabulary = w.data == base.token_embedding.data || w.data == base.lm_head.data;
    const Weight converted{vocabulary ? spec.embedding_matrix_type() : spec.matrix_type, w.rows, w.cols};
    bytes += converted.bytes() + converted.scale_bytes();
  });
  if (spec.rotated && base.lm_head.data == base.token_embedding.data) {
    const Weight head{spec.embedding_matrix_type(), base.lm_head.rows, base.lm_head.cols};
    bytes += head.bytes() + head.scale_bytes();  // rotation unties the head
  }
  for (const LayerWeights& layer : base.layers) bytes += (layer.attn_norm.size() + layer.ffn_norm.size()) * sizeof(float);
  return bytes + base.final_norm.size() * sizeof(float);
}

Model derive_variant(const Model& base, const VariantSpec& spec) {
  if (spec.rotated) {
    const Model rotated = rotate_model(base, kVariantRotationSeed);
    VariantSpec plain = spec;
    plain.rotated = false;
    return derive_variant(rotated, plain);
  }
  Model out;
  out.config = base.config;
  out.final_norm = base.final_norm;
  out.layers = base.layers;  // norms copied; every matrix view is replaced below
  out.token_embedding = base.token_embedding;
  out.lm_head = base.lm_head;
  const bool tied = base.lm_head.data == base.token_embedding.data;
  for_each_matrix(out, [&](Weight& w) {
    const bool vocabulary = w.data == base.token_embedding.data || w.data == base.lm_head.data;
    auto converted = quantize_matrix(w, vocabulary ? spec.embedding_matrix_type() : spec.matrix_type);
    w = converted->view;
    out.storage.push_back(std::move(converted));
  });
  if (tied) out.lm_head = out.token_embedding;
  return out;
}

std::string derivation_text(const VariantSpec& spec, const std::string& base_storage) {
  const std::string from = " from " + base_storage;
  if (spec.rotated) {
    VariantSpec plain = spec;
    plain.rotated = false;
    return derivation_text(plain, "weights rotated without calibration data (norms folded in; residual stream by "
                                  "a seeded random orthogonal matrix, values per head and the FFN activation by "
                                  "Hadamard blocks, the latter at run time; LM head untied)" + from);
  }
  switch (spec.matrix_type) {
    case DType::F32: return "f32 (exact dequantization)" + from;
    case DType::F16: return "f16 (round to nearest even)" + from;
    case DType::BF16: return "bf16 (round to nearest even)" + from;
    case DType::I8: return "int8 per-output-channel symmetric (scale max|w|/127 per row), int8 activations per token" + from;
    case DType::I8_G32:
      return "int8 group-32 symmetric (scale max|w|/127 per 32 weights), int8 activations per block of 32" + from;
    case DType::W8A16_G32:
      return "int8 group-32 asymmetric (offset min, scale (max-min)/255 per 32 weights), int16 activations per token" +
             from;
    case DType::W4A16_G32:
    case DType::W4A16_G128:
      return "int4 group-" + std::to_string(dtype_group_size(spec.matrix_type)) +
             " asymmetric (offset min, scale (max-min)/15 per group; embedding and LM head int8 group-32 "
             "asymmetric), int16 activations per token" + from;
    default:
      return "int4 group-" + std::to_string(dtype_group_size(spec.matrix_type)) +
             " symmetric (scale max|w|/7 per group), int8 activations per token" + from;
  }
}

}  // namespace tidal
