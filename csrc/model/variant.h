// Model variants: one base model's weights re-encoded in another format
// (f32, f16, bf16, int8*, int4-g*, w8a16-g32, w4a16-g*), derived at load time or ahead
// of time by `tidal quantize`. A variant is white-box: it records its base
// and how it was derived, so the catalog can say what it costs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"

namespace tidal {

struct VariantSpec {
  std::string name;  // "f32", ..., "int4-g128", "w8a16-g32", "w4a16-g32", "w4a16-g128"
  DType matrix_type = DType::F32;
  // The weights are rotated first (model/rotation.h), so that the int8
  // activations meet no outlier channels.
  bool rotated = false;
  // The token embedding's and the LM head's format when it is not
  // matrix_type: the W4A16 variants keep it at 8 bits, as llama.cpp's Q4
  // files keep theirs at Q8_0 or above, because every logit reads it.
  std::optional<DType> embedding_type = std::nullopt;

  DType embedding_matrix_type() const { return embedding_type.value_or(matrix_type); }
};

// The seed of the rotation every rotated variant uses: one fixed rotation,
// so that a variant derived twice is the same model.
inline constexpr uint64_t kVariantRotationSeed = 0x7469'6461'6c72'6f74;  // "tidalrot"

// Parses one variant name; nullopt when it is not one of the names above.
std::optional<VariantSpec> parse_variant(std::string_view name);
// Parses a comma-separated list ("f16,int8,int4-g128"); throws tidal::Error
// (kInvalidArgument) naming the bad entry and the accepted names.
std::vector<VariantSpec> parse_variant_list(std::string_view list);

// What a model's matrices are stored as, e.g. "q4_1" or "int8"; the
// distinct types joined by "+" when they differ, e.g. "q4_1+q8_0"
// (llama2.c files are "f32").
std::string describe_storage(const Model& model);

// Bytes the model's matrices (values and scales) and norm vectors occupy in
// memory; the tied LM head is counted once.
size_t model_weight_bytes(const Model& model);

// What model_weight_bytes(derive_variant(base, spec)) will be, without
// deriving anything.
size_t variant_weight_bytes(const Model& base, const VariantSpec& spec);

// A copy of `base` with every matrix (embedding and LM head included; a tied
// head stays tied) converted to spec.matrix_type through quantize_matrix,
// after rotate_model when spec.rotated (which unties the head).
// The result owns all of its storage and does not refer to `base`.
Model derive_variant(const Model& base, const VariantSpec& spec);

// One line saying how a variant came from its base, e.g.
// "int4 group-128 symmetric (scale max|w|/7 per group) from q4_1".
std::string derivation_text(const VariantSpec& spec, const std::string& base_storage);

}  // namespace tidal
