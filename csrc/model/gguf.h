// Reader for GGUF files (versions 2 and 3): metadata key/values and tensor
// descriptors, with tensor data memory-mapped read-only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/dtype.h"

namespace tidal {

// One metadata value. Arrays hold their elements as a vector of the element
// type (arrays of arrays are not used by any model we load and are rejected).
using GgufValue = std::variant<uint64_t, int64_t, double, bool, std::string,
                               std::vector<int64_t>, std::vector<double>,
                               std::vector<std::string>>;

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the contiguous (row) length
  DType type;
  const uint8_t* data;         // into the mapping
  size_t bytes;
};

class GgufFile {
 public:
  // Throws tidal::Error with a one-line message: kNotFound (cannot open),
  // kCorrupt (malformed), kUnsupported (version, tensor type),
  // kInvalidArgument (not a regular file), kResourceExhausted (mmap failed).
  static std::unique_ptr<GgufFile> open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;  // owns the mapping
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;

  // Typed accessors: integers of any width/sign read as int64, floats as double.
  // Throw kCorrupt when the key exists with another type; `fallback` when absent.
  std::string get_string(const std::string& key, const std::string& fallback = "") const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::vector<std::string> get_string_array(const std::string& key) const;  // empty when absent
  std::vector<double> get_float_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;

 private:
  GgufFile() = default;
  class Parser;
  const GgufValue* lookup(const std::string& key) const;
  [[noreturn]] void fail_type(const std::string& key, const char* expected) const;

  std::string path_;  // for error messages
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;  // name -> position in tensors_
  void* map_ = nullptr;
  size_t map_size_ = 0;
};

}  // namespace tidal
