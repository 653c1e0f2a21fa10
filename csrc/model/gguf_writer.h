// Writer for GGUF version 3 files (little-endian, general.alignment 32):
// metadata of every value type GgufFile reads, and tensors whose bytes the
// caller keeps alive until write() returns. The counterpart of gguf.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/gguf.h"

namespace tidal {

class GgufWriter {
 public:
  // Tensor data offsets are multiples of this; write() records it as
  // general.alignment whatever an earlier set() said. 64, not GGUF's default
  // 32, so that mapped F32/F16 rows start on a cache line (align_float_weights).
  static constexpr uint64_t kAlignment = 64;

  // Sets `key` to `value` declared as `type` (`element`: an array's element
  // type). A key set again keeps its place and takes the new value. Throws
  // kInvalidArgument when the value cannot be written as that type: another
  // kind of value, an integer out of the type's range, an array of arrays.
  void set(const std::string& key, GgufValue value, GgufType type, GgufType element = GgufType::kArray);
  void set_string(const std::string& key, std::string value) { set(key, std::move(value), GgufType::kString); }
  void set_u32(const std::string& key, uint32_t value) { set(key, uint64_t{value}, GgufType::kU32); }
  void set_f32(const std::string& key, float value) { set(key, double{value}, GgufType::kF32); }
  // Copies every key of `file` with its declared type, in file order.
  void copy_metadata(const GgufFile& file);
  void remove(const std::string& key);
  bool has(const std::string& key) const;

  // `shape` is in ggml order (shape[0] is the row length). `bytes` must be
  // exactly what GgufFile computes for that shape and type, so every file
  // written here reads back; throws kInvalidArgument otherwise, or for a
  // type with no ggml number (the int4 formats: write their bytes as I8).
  void add_tensor(const std::string& name, const std::vector<int64_t>& shape, DType type, const uint8_t* data,
                  size_t bytes);

  // Writes the file through a temporary sibling renamed into place, so a
  // failed write leaves no partial file at `path`. Throws kInvalidArgument
  // when the file cannot be created, kResourceExhausted when writing fails.
  void write(const std::string& path);

 private:
  struct Entry {
    GgufKey key;
    GgufValue value;
  };
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    uint32_t ggml_type;
    const uint8_t* data;
    size_t bytes;
  };

  std::vector<Entry> entries_;
  std::vector<Tensor> tensors_;
};

}  // namespace tidal
