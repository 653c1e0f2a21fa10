#include <fstream>
#include <sstream>
#include <stdexcept>

#include "dataset.h"

namespace tidal::bench {

namespace {

// BurstGPT's CSV has no quoted fields, so a plain comma split is exact.
std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream ss(line);
  std::string field;
  while (std::getline(ss, field, ',')) {
    if (!field.empty() && field.back() == '\r') field.pop_back();
    fields.push_back(field);
  }
  return fields;
}

size_t column(const std::vector<std::string>& header, const std::string& name, const std::string& path) {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return i;
  throw std::runtime_error(path + ": no '" + name + "' column");
}

}  // namespace

std::vector<SampleRequest> burstgpt_dataset(const std::string& path, size_t n, int vocab_size) {
  if (vocab_size <= 0) throw std::invalid_argument("the burstgpt-csv dataset needs --random-vocab-size");
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::string line;
  if (!std::getline(in, line)) throw std::runtime_error(path + ": empty file");
  const auto header = split_csv_line(line);
  const size_t ts_col = column(header, "Timestamp", path);
  const size_t model_col = column(header, "Model", path);
  const size_t req_col = column(header, "Request tokens", path);
  const size_t resp_col = column(header, "Response tokens", path);

  std::vector<SampleRequest> out;
  size_t line_no = 1;
  while (out.size() < n && std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line == "\r") continue;
    const auto f = split_csv_line(line);
    if (f.size() < header.size()) throw std::runtime_error(path + ":" + std::to_string(line_no) + ": too few columns");
    if (f[model_col] != "GPT-4") continue;
    SampleRequest s;
    try {
      s.timestamp_s = std::stod(f[ts_col]);
      s.prompt_len = std::stoi(f[req_col]);
      s.output_len = std::stoi(f[resp_col]);
    } catch (const std::logic_error&) {
      throw std::runtime_error(path + ":" + std::to_string(line_no) + ": not a number");
    }
    if (s.output_len <= 0 || s.prompt_len <= 0) continue;
    const size_t index = out.size();
    s.prompt_ids.resize(s.prompt_len);
    for (int j = 0; j < s.prompt_len; ++j) s.prompt_ids[j] = static_cast<int32_t>((index + j) % vocab_size);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace tidal::bench
