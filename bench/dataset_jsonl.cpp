#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "dataset.h"

namespace tidal::bench {

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
    if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string())
      throw std::runtime_error(where + ": expected an object with a string \"prompt\"");
    SampleRequest s;
    s.prompt_text = j["prompt"].get<std::string>();
    s.output_len = default_output_len;
    if (auto it = j.find("output_tokens"); it != j.end()) {
      if (!it->is_number_integer() || it->get<int>() < 1)
        throw std::runtime_error(where + ": \"output_tokens\" must be a positive integer");
      s.output_len = it->get<int>();
    }
    if (auto it = j.find("timestamp"); it != j.end()) {
      if (!it->is_number()) throw std::runtime_error(where + ": \"timestamp\" must be a number");
      s.timestamp_s = it->get<double>();
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace tidal::bench
