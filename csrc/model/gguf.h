// Reader for GGUF files (versions 2 and 3): metadata key/values and tensor
// descriptors, with tensor data memory-mapped read-only. Also the numbering
// shared with the writer (gguf_writer.h) and the keys of tidal's own
// extension for its integer formats.
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

// Metadata value types as numbered in the file format.
enum class GgufType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// One metadata value. Arrays hold their elements as a vector of the element
// type (arrays of arrays are not used by any model we load and are rejected).
using GgufValue = std::variant<uint64_t, int64_t, double, bool, std::string,
                               std::vector<int64_t>, std::vector<double>,
                               std::vector<std::string>>;

// How a key was declared in the file. GgufValue folds integer widths and
// float precisions together; this keeps what is needed to write the key back
// exactly (llama.cpp checks the declared type of the keys it reads).
struct GgufKey {
  std::string name;
  GgufType type;
  GgufType element;  // arrays: the element type; otherwise equal to `type`
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the contiguous (row) length
  DType type;                  // DType::I8 for ggml's I8 type: plain bytes (see below)
  const uint8_t* data;         // into the mapping
  size_t bytes;
};

// ggml's numbers for the tensor types tidal reads and writes. ggml's I8 type
// (24) is read as a plain byte array labelled DType::I8: tidal stores the
// codes of its integer formats under it, and only the keys below give those
// bytes a meaning. ggml_type_of is nullopt for the int4 formats, which have
// no ggml counterpart at all.
inline constexpr uint32_t kGgmlTypeI8 = 24;
std::optional<DType> dtype_from_ggml(uint32_t id);
std::optional<uint32_t> ggml_type_of(DType type);

// tidal's integer variants (int8, int4-g*) in GGUF. kQuantTypeKey names the
// format (a variant name, e.g. "int4-g128") and kQuantRowAlignKey records
// kIntRowAlign, the padding rule the rows were written with (a multiple of
// it and of the group size; see dtype_padded_cols). Every matrix `<name>` is then two tensors: `<name>` of ggml type
// I8 and shape [row bytes, rows] holding the padded rows of codes exactly as
// Weight::data does, and `<name>` + kScaleSuffix of type F32 and shape
// [scales per row, rows] holding Weight::scales. A matrix's logical column
// count follows from the llama.* hyper-parameters, as for every other type.
// kQuantVocabTypeKey, when present, names another integer format for the
// token embedding and LM head (the W4A16 variants keep those at 8 bits).
inline constexpr const char* kQuantTypeKey = "tidal.quant.type";
inline constexpr const char* kQuantVocabTypeKey = "tidal.quant.vocab_type";
inline constexpr const char* kQuantRowAlignKey = "tidal.quant.row_align";
inline constexpr const char* kScaleSuffix = ".scale";

// Keys recording where a variant file came from: its variant name, the base
// file and storage ("model.gguf (q4_1)"), and derivation_text.
inline constexpr const char* kVariantKey = "tidal.variant";
inline constexpr const char* kVariantBaseKey = "tidal.variant.base";
inline constexpr const char* kVariantDerivationKey = "tidal.variant.derivation";

// ModelConfig::ffn_hadamard_block of a rotated variant (model/rotation.h):
// without it the file's w_down would be applied to unrotated activations,
// so a reader that does not know the key must not load such a file.
inline constexpr const char* kFfnHadamardBlockKey = "tidal.ffn_hadamard_block";

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
  const std::vector<GgufKey>& keys() const { return keys_; }  // in file order
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
  std::vector<GgufKey> keys_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;  // name -> position in tensors_
  void* map_ = nullptr;
  size_t map_size_ = 0;
};

}  // namespace tidal
