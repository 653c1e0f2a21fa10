#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "dataset.h"

namespace tidal::bench {

namespace {

int positive_int(const nlohmann::json& j, const char* key, int fallback, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (!it->is_number_integer() || it->get<int>() < 1)
    throw std::runtime_error(where + ": \"" + key + "\" must be a positive integer");
  return it->get<int>();
}

}  // namespace

std::vector<SampleRequest> jsonl_dataset(const std::string& path, size_t n, int default_output_len) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<SampleRequest> out;
  std::string line;
  size_t line_no = 0;
  while (out.size() < n && std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto where = path + ":" + std::to_string(line_no);
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    auto prompt = j.is_object() ? j.find("prompt") : j.end();
    SampleRequest s;
    if (j.is_object() && prompt != j.end() && prompt->is_string()) {
      s.prompt_text = prompt->get<std::string>();
    } else if (j.is_object() && prompt != j.end() && prompt->is_array() && !prompt->empty()) {
      for (const auto& id : *prompt) {
        if (!id.is_number_integer()) throw std::runtime_error(where + ": \"prompt\" ids must be integers");
        s.prompt_ids.push_back(id.get<int32_t>());
      }
    } else {
      throw std::runtime_error(where + ": expected an object with \"prompt\" (text or token ids)");
    }
    s.prompt_len = positive_int(j, "prompt_len", static_cast<int>(s.prompt_ids.size()), where);
    s.output_len = positive_int(j, "output_tokens", default_output_len, where);
    if (auto it = j.find("timestamp"); it != j.end()) {
      if (!it->is_number()) throw std::runtime_error(where + ": \"timestamp\" must be a number");
      s.timestamp_s = it->get<double>();
    }
    out.push_back(std::move(s));
  }
  return out;
}

void write_jsonl_dataset(const std::string& path, const std::vector<SampleRequest>& samples) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path);
  for (const auto& s : samples) {
    nlohmann::json j;
    j["prompt"] = s.prompt_ids.empty() ? nlohmann::json(s.prompt_text) : nlohmann::json(s.prompt_ids);
    if (s.prompt_len > 0) j["prompt_len"] = s.prompt_len;
    j["output_tokens"] = s.output_len;
    if (s.timestamp_s) j["timestamp"] = *s.timestamp_s;
    out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace tidal::bench
