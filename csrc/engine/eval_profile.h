// The variant profile catalog `tidal eval --profile-out` writes and
// `tidal serve --variants` reads: one JSON file per model,
//   {"model": "<model file name>",
//    "variants": {"<variant>": {"derivation": str, "bytes": int, "perplexity": float, "base": str,
//                               "base_perplexity": float, "top1_agreement": float, "mean_kl": float,
//                               "eval_text": str, "eval_tokens": int, "decode_tok_s_batch1": float,
//                               "threads": int, "measured_at": "<ISO-8601 UTC>"}}}
#pragma once

#include <cstdint>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>

namespace tidal {

struct VariantProfile {
  std::string derivation;
  int64_t bytes = 0;
  double perplexity = 0.0;
  std::string base;
  double base_perplexity = 0.0;
  double top1_agreement = 0.0;
  double mean_kl = 0.0;
  std::string eval_text;  // file name, no directory
  int64_t eval_tokens = 0;
  double decode_tok_s_batch1 = 0.0;
  int threads = 0;        // CPU threads decode_tok_s_batch1 was measured with
  std::string measured_at;
};

nlohmann::json to_json(const VariantProfile& p);

// "2024-05-01T12:34:56Z".
std::string iso8601_utc(std::time_t t);

// Adds or replaces `variant`'s entry in the catalog at `path`, keeping every
// other entry; creates the file when missing. The new file is written next
// to the old one and renamed over it, so a reader never sees half a file.
// Throws tidal::Error when the existing file is not a catalog or describes
// another model, or when it cannot be written. The merge reads, then
// replaces: two processes merging into one file at once can lose an entry,
// so run evaluations that share a catalog one after another.
void merge_variant_profile(const std::string& path, const std::string& model_file, const std::string& variant,
                           const VariantProfile& profile);

}  // namespace tidal
