// The variant catalog behind GET /v1/variants: for the base model and each
// variant served beside it, what its weights are stored as, how they were
// derived, what they occupy, and -- when `tidal eval --profile-out` measured
// it -- what the variant costs in quality and speed (its "profile").
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/variant.h"

namespace tidal {

// The name a variant is served under: "<base name>:<variant>", e.g.
// "SmolLM2-135M-Instruct:int8".
std::string variant_served_name(const std::string& base_name, const std::string& variant);

// The names each engine is served under: the base's (`base_names`, which
// responses report the first of) first, then "<first base name>:<variant>"
// for each variant in order. Throws Error(kInvalidArgument) when a name
// would mean two engines: a variant listed twice, or a base name equal to a
// variant's served name.
std::vector<std::vector<std::string>> served_model_names(const std::vector<std::string>& base_names,
                                                         const std::vector<VariantSpec>& variants);

struct CatalogEntry {
  std::string id;          // the served name
  std::string profile_key; // its key in the profile file: the variant name (the base: its storage name)
  std::string storage;     // describe_storage: "q4_1", "int8", ...
  std::string derivation;  // derivation_text, or "as loaded" for the base
  size_t bytes = 0;        // model_weight_bytes
};

// The base model's entry: its profile is the file's entry for the variant
// equal to the base's own storage (e.g. "f32" for a llama2.c model), if any.
CatalogEntry base_catalog_entry(const std::string& base_name, const Model& base);
// `storage` and `bytes`: describe_storage and model_weight_bytes of the
// variant's weights.
CatalogEntry variant_catalog_entry(const std::string& base_name, const VariantSpec& spec, const std::string& storage,
                                   size_t bytes, const std::string& base_storage);

// The `variants` object of a profile file written by `tidal eval
// --profile-out` ({"model": "<file name>", "variants": {"<V>": {...}}}) for
// the model at `model_path`. Throws tidal::Error with one line naming the
// file when it cannot be read (kNotFound), is not JSON of that shape
// (kCorrupt), or profiles a model of another file name (kInvalidArgument).
// The entries are passed through as they are: the catalog shows what eval
// measured.
nlohmann::json read_variant_profiles(const std::string& path, const std::string& model_path);

// The profile file used without --variant-profile: "<model path>.variants.json"
// when it exists, else "" (no profiles).
std::string default_variant_profile_path(const std::string& model_path);

// {"object": "list", "data": [{"id", "base", "storage", "derivation",
// "bytes", "profile"}...]}, entries in order; "profile" is null for an entry
// the profiles (a `variants` object, or null) do not cover.
nlohmann::json variant_catalog(const std::string& base_name, const std::vector<CatalogEntry>& entries,
                               const nlohmann::json& profiles);

}  // namespace tidal
