#include "engine/eval_profile.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace tidal {

namespace fs = std::filesystem;

nlohmann::json to_json(const VariantProfile& p) {
  return {{"derivation", p.derivation},
          {"bytes", p.bytes},
          {"perplexity", p.perplexity},
          {"base", p.base},
          {"base_perplexity", p.base_perplexity},
          {"top1_agreement", p.top1_agreement},
          {"mean_kl", p.mean_kl},
          {"eval_text", p.eval_text},
          {"eval_tokens", p.eval_tokens},
          {"decode_tok_s_batch1", p.decode_tok_s_batch1},
          {"threads", p.threads},
          {"measured_at", p.measured_at}};
}

std::string iso8601_utc(std::time_t t) {
  std::tm utc{};
  gmtime_r(&t, &utc);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

namespace {

nlohmann::json read_catalog(const std::string& path, const std::string& model_file) {
  if (!fs::exists(path)) return {{"model", model_file}, {"variants", nlohmann::json::object()}};
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kNotFound, "cannot read profile catalog " + path);
  nlohmann::json catalog = nlohmann::json::parse(in, nullptr, false);
  if (catalog.is_discarded() || !catalog.is_object() || !catalog.contains("variants") ||
      !catalog["variants"].is_object() || !catalog.contains("model") || !catalog["model"].is_string()) {
    throw Error(ErrorCode::kCorrupt, path + ": not a variant profile catalog");
  }
  if (catalog["model"] != model_file) {
    throw Error(ErrorCode::kInvalidArgument, path + " profiles model " + catalog["model"].get<std::string>() +
                                                 ", not " + model_file);
  }
  return catalog;
}

}  // namespace

void merge_variant_profile(const std::string& path, const std::string& model_file, const std::string& variant,
                           const VariantProfile& profile) {
  nlohmann::json catalog = read_catalog(path, model_file);
  catalog["variants"][variant] = to_json(profile);
  // Unique per process, in the target's directory so the rename stays on one file system.
  const std::string temp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(temp, std::ios::trunc);
    out << catalog.dump(2) << "\n";
    out.close();
    if (!out) {
      std::remove(temp.c_str());
      throw Error(ErrorCode::kNotFound, "cannot write profile catalog " + path);
    }
  }
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) {
    std::remove(temp.c_str());
    throw Error(ErrorCode::kNotFound, "cannot replace profile catalog " + path + ": " + ec.message());
  }
}

}  // namespace tidal
