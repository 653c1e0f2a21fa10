#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "dataset.h"

namespace tidal::bench {

namespace {

// vLLM's is_valid_sequence with its defaults.
bool valid_lengths(int prompt_len, int output_len, bool check_output) {
  if (prompt_len < 4 || (check_output && output_len < 4)) return false;
  return prompt_len <= 1024 && prompt_len + output_len <= 2048;
}

}  // namespace

std::vector<SampleRequest> sharegpt_dataset(const std::string& path, size_t n, std::optional<int> fixed_output_len,
                                            const TextCodec& codec, std::mt19937_64& rng) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  const nlohmann::json all = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!all.is_array()) throw std::runtime_error(path + ": expected a JSON array of conversations");

  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& entry : all) {
    if (!entry.is_object()) continue;
    auto conv = entry.find("conversations");
    if (conv == entry.end() || !conv->is_array() || conv->size() < 2) continue;
    const auto& first = (*conv)[0];
    const auto& second = (*conv)[1];
    if (!first.contains("value") || !second.contains("value") || !first["value"].is_string() ||
        !second["value"].is_string())
      continue;
    pairs.emplace_back(first["value"].get<std::string>(), second["value"].get<std::string>());
  }
  std::shuffle(pairs.begin(), pairs.end(), rng);

  std::vector<SampleRequest> out;
  for (const auto& [prompt, completion] : pairs) {
    if (out.size() >= n) break;
    SampleRequest s;
    s.prompt_text = prompt;
    s.prompt_len = static_cast<int>(codec.encode(prompt).size());
    s.output_len = fixed_output_len ? *fixed_output_len : static_cast<int>(codec.encode(completion).size());
    if (!valid_lengths(s.prompt_len, s.output_len, !fixed_output_len)) continue;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace tidal::bench
