#include "server/variant_catalog.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace tidal {

std::string variant_served_name(const std::string& base_name, const std::string& variant) {
  return base_name + ":" + variant;
}

std::vector<std::vector<std::string>> served_model_names(const std::vector<std::string>& base_names,
                                                         const std::vector<VariantSpec>& variants) {
  std::vector<std::vector<std::string>> names = {base_names};
  for (const VariantSpec& spec : variants) {
    const std::string name = variant_served_name(base_names.front(), spec.name);
    for (size_t i = 0; i < names.size(); ++i) {
      if (std::find(names[i].begin(), names[i].end(), name) == names[i].end()) continue;
      throw Error(ErrorCode::kInvalidArgument, i == 0 ? "--served-model-name '" + name +
                                                            "' is also the name of variant " + spec.name
                                                      : "--variants lists '" + spec.name + "' twice");
    }
    names.push_back({name});
  }
  return names;
}

CatalogEntry base_catalog_entry(const std::string& base_name, const Model& base) {
  const std::string storage = describe_storage(base);
  return {base_name, storage, storage, "as loaded", model_weight_bytes(base)};
}

CatalogEntry variant_catalog_entry(const std::string& base_name, const VariantSpec& spec, const std::string& storage,
                                   size_t bytes, const std::string& base_storage) {
  return {variant_served_name(base_name, spec.name), spec.name, storage, derivation_text(spec, base_storage), bytes};
}

nlohmann::json read_variant_profiles(const std::string& path, const std::string& model_path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kNotFound, "cannot open variant profile " + path);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json file = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (file.is_discarded()) throw Error(ErrorCode::kCorrupt, "variant profile " + path + " is not valid JSON");
  const auto shape_error = [&](const std::string& what) {
    return Error(ErrorCode::kCorrupt, "variant profile " + path + ": " + what +
                                          R"( (expected {"model": "...", "variants": {"<variant>": {...}}}))");
  };
  if (!file.is_object()) throw shape_error("not a JSON object");
  if (!file.contains("model") || !file["model"].is_string()) throw shape_error("no \"model\" string");
  if (!file.contains("variants") || !file["variants"].is_object()) throw shape_error("no \"variants\" object");
  for (const auto& [name, entry] : file["variants"].items()) {
    if (!entry.is_object()) throw shape_error("the entry of \"" + name + "\" is not an object");
  }
  // Measurements of another model would be shown as this one's.
  const std::string model_file = std::filesystem::path(model_path).filename().string();
  if (file["model"] != model_file) {
    throw Error(ErrorCode::kInvalidArgument, "variant profile " + path + " profiles " +
                                                 file["model"].get<std::string>() + ", not " + model_file);
  }
  return file["variants"];
}

std::string default_variant_profile_path(const std::string& model_path) {
  const std::string path = model_path + ".variants.json";
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) ? path : "";
}

nlohmann::json variant_catalog(const std::string& base_name, const std::vector<CatalogEntry>& entries,
                               const nlohmann::json& profiles) {
  nlohmann::json data = nlohmann::json::array();
  for (const CatalogEntry& e : entries) {
    const bool profiled = profiles.is_object() && profiles.contains(e.profile_key);
    data.push_back({{"id", e.id},
                    {"base", base_name},
                    {"storage", e.storage},
                    {"derivation", e.derivation},
                    {"bytes", e.bytes},
                    {"profile", profiled ? profiles.at(e.profile_key) : nlohmann::json(nullptr)}});
  }
  return {{"object", "list"}, {"data", std::move(data)}};
}

}  // namespace tidal
