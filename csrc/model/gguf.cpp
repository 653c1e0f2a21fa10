#include "model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "core/error.h"

namespace tidal {

static_assert(std::endian::native == std::endian::little, "GGUF fields are read in place as little-endian");

namespace {

using enum GgufType;

// Smallest encoding of one value of `type`, used to bound counts by the bytes
// left in the file before allocating anything.
size_t min_value_bytes(GgufType type) {
  switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: case kString: return 8;  // a string is at least its length
    case kArray: return 4 + 8;
  }
  return 0;
}

constexpr size_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, 1-byte value
constexpr size_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, n_dims, one dim, type, offset
constexpr uint64_t kDefaultAlignment = 32;

// ggml's numbers for the tensor types tidal knows.
constexpr std::pair<uint32_t, DType> kGgmlTypes[] = {
    {0, DType::F32}, {1, DType::F16}, {2, DType::Q4_0}, {3, DType::Q4_1},
    {8, DType::Q8_0}, {kGgmlTypeI8, DType::I8}, {30, DType::BF16},
};

}  // namespace

std::optional<DType> dtype_from_ggml(uint32_t id) {
  for (const auto& [ggml, dtype] : kGgmlTypes) {
    if (ggml == id) return dtype;
  }
  return std::nullopt;
}

std::optional<uint32_t> ggml_type_of(DType type) {
  for (const auto& [ggml, dtype] : kGgmlTypes) {
    if (dtype == type) return ggml;
  }
  return std::nullopt;
}

// Cursor over the mapped bytes. Every read is bounds-checked, so a truncated
// or corrupt file ends in a kCorrupt error rather than a read past the map.
class GgufFile::Parser {
 public:
  Parser(GgufFile& file, const uint8_t* data, size_t size) : file_(file), data_(data), size_(size) {}

  void parse() {
    need(4, "magic");
    if (std::memcmp(data_, "GGUF", 4) != 0) fail("not a GGUF file (bad magic)");
    pos_ = 4;
    file_.version_ = read<uint32_t>("version");
    if (file_.version_ == 1) unsupported("GGUF version 1 is not supported (need 2 or 3)");
    if (file_.version_ != 2 && file_.version_ != 3) {
      unsupported("unknown GGUF version " + std::to_string(file_.version_));
    }
    const uint64_t tensor_count = read<uint64_t>("tensor count");
    const uint64_t kv_count = read<uint64_t>("metadata count");
    if (kv_count > remaining() / kMinKvBytes) fail("metadata count " + std::to_string(kv_count) + " exceeds the file");
    for (uint64_t i = 0; i < kv_count; ++i) read_kv();

    if (tensor_count > remaining() / kMinTensorInfoBytes) {
      fail("tensor count " + std::to_string(tensor_count) + " exceeds the file");
    }
    std::vector<uint64_t> offsets;
    offsets.reserve(tensor_count);
    file_.tensors_.reserve(tensor_count);
    for (uint64_t i = 0; i < tensor_count; ++i) offsets.push_back(read_tensor_info());
    place_tensors(offsets);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::kCorrupt, file_.path_ + ": " + what);
  }
  [[noreturn]] void unsupported(const std::string& what) const {
    throw Error(ErrorCode::kUnsupported, file_.path_ + ": " + what);
  }

  size_t remaining() const { return size_ - pos_; }

  void need(size_t n, const std::string& what) const {
    if (n > remaining()) fail("truncated " + what + " at offset " + std::to_string(pos_));
  }

  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& what) {
    const uint64_t len = read<uint64_t>(what + " length");
    need(len, what);  // also caps the allocation by the file size
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

  // Scalars of one family (unsigned / signed / float) share a variant member.
  uint64_t read_unsigned(GgufType type, const std::string& what) {
    switch (type) {
      case kU8: return read<uint8_t>(what);
      case kU16: return read<uint16_t>(what);
      case kU32: return read<uint32_t>(what);
      default: return read<uint64_t>(what);
    }
  }
  int64_t read_signed(GgufType type, const std::string& what) {
    switch (type) {
      case kI8: return read<int8_t>(what);
      case kI16: return read<int16_t>(what);
      case kI32: return read<int32_t>(what);
      default: return read<int64_t>(what);
    }
  }
  double read_float(GgufType type, const std::string& what) {
    return type == kF32 ? static_cast<double>(read<float>(what)) : read<double>(what);
  }

  // A value type as stored; any number outside the enum is a corrupt file.
  GgufType read_type(const std::string& what) {
    const uint32_t raw = read<uint32_t>(what);
    if (raw > static_cast<uint32_t>(kF64)) fail(what + " is unknown value type " + std::to_string(raw));
    return static_cast<GgufType>(raw);
  }

  // `element` receives an array's element type (else `type`).
  GgufValue read_value(GgufType type, const std::string& key, GgufType& element) {
    const std::string what = "value of '" + key + "'";
    element = type;
    switch (type) {
      case kU8: case kU16: case kU32: case kU64: return read_unsigned(type, what);
      case kI8: case kI16: case kI32: case kI64: return read_signed(type, what);
      case kF32: case kF64: return read_float(type, what);
      case kBool: return read<uint8_t>(what) != 0;
      case kString: return read_string(what);
      case kArray: return read_array(key, element);
    }
    fail("metadata key '" + key + "' has unknown value type");
  }

  GgufValue read_array(const std::string& key, GgufType& element) {
    const std::string what = "array '" + key + "'";
    const GgufType elem = read_type(what + " element type");
    element = elem;
    const uint64_t count = read<uint64_t>(what + " length");
    if (elem == kArray) unsupported("metadata key '" + key + "' is an array of arrays");
    const size_t min_bytes = min_value_bytes(elem);
    if (count > remaining() / min_bytes) fail(what + " of " + std::to_string(count) + " elements exceeds the file");
    const size_t n = static_cast<size_t>(count);
    switch (elem) {
      case kString: {
        std::vector<std::string> out;
        out.reserve(n);
        for (size_t i = 0; i < n; ++i) out.push_back(read_string(what));
        return out;
      }
      case kF32: case kF64: {
        std::vector<double> out(n);
        for (auto& v : out) v = read_float(elem, what);
        return out;
      }
      default: {  // integers and bools, all as int64
        std::vector<int64_t> out(n);
        for (auto& v : out) {
          if (elem == kI8 || elem == kI16 || elem == kI32 || elem == kI64) {
            v = read_signed(elem, what);
          } else if (elem == kBool) {
            v = read<uint8_t>(what) != 0;
          } else {
            v = static_cast<int64_t>(read_unsigned(elem, what));
          }
        }
        return out;
      }
    }
  }

  void read_kv() {
    std::string key = read_string("metadata key");
    const GgufType type = read_type("type of '" + key + "'");
    GgufType element = type;
    GgufValue value = read_value(type, key, element);
    if (!file_.metadata_.emplace(key, std::move(value)).second) fail("duplicate metadata key '" + key + "'");
    file_.keys_.push_back({std::move(key), type, element});
  }

  // Reads one tensor descriptor; returns its data offset (placed later, once
  // the data section start is known).
  uint64_t read_tensor_info() {
    GgufTensorInfo info{};
    info.name = read_string("tensor name");
    const std::string what = "tensor '" + info.name + "'";
    const uint32_t n_dims = read<uint32_t>(what + " rank");
    if (n_dims == 0 || n_dims > 4) fail(what + " has rank " + std::to_string(n_dims) + " (need 1..4)");
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = read<uint64_t>(what + " shape");
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(elements, ne, &elements)) {
        fail(what + " has invalid dimension " + std::to_string(ne));
      }
      info.shape.push_back(static_cast<int64_t>(ne));
    }
    const uint32_t type_id = read<uint32_t>(what + " type");
    const std::optional<DType> type = dtype_from_ggml(type_id);
    if (!type) unsupported(what + " has unsupported ggml type " + std::to_string(type_id));
    info.type = *type;
    const int64_t block = dtype_block_elems(info.type);
    if (info.shape[0] % block != 0) {
      fail(what + " row length " + std::to_string(info.shape[0]) + " is not a multiple of the " +
           std::string(dtype_name(info.type)) + " block size " + std::to_string(block));
    }
    const uint64_t blocks = elements / static_cast<uint64_t>(block);
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(dtype_block_bytes(info.type)), &bytes) ||
        bytes > size_) {
      fail(what + " is larger than the file");
    }
    info.bytes = static_cast<size_t>(bytes);
    const uint64_t offset = read<uint64_t>(what + " offset");
    if (!file_.tensor_index_.emplace(info.name, file_.tensors_.size()).second) fail("duplicate " + what);
    file_.tensors_.push_back(std::move(info));
    return offset;
  }

  void place_tensors(const std::vector<uint64_t>& offsets) {
    const int64_t alignment = file_.get_int("general.alignment", kDefaultAlignment);
    if (alignment <= 0 || !std::has_single_bit(static_cast<uint64_t>(alignment))) {
      fail("general.alignment " + std::to_string(alignment) + " is not a power of two");
    }
    const uint64_t align = static_cast<uint64_t>(alignment);
    uint64_t data_start = 0;
    if (__builtin_add_overflow(static_cast<uint64_t>(pos_), align - 1, &data_start)) fail("alignment overflows");
    data_start &= ~(align - 1);
    for (size_t i = 0; i < offsets.size(); ++i) {
      GgufTensorInfo& info = file_.tensors_[i];
      const uint64_t offset = offsets[i];
      if (offset % align != 0) fail("tensor '" + info.name + "' offset " + std::to_string(offset) + " is misaligned");
      // data_start + offset + bytes <= size, written to avoid overflow.
      if (data_start > size_ || offset > size_ - data_start || info.bytes > size_ - data_start - offset) {
        fail("tensor '" + info.name + "' data (offset " + std::to_string(offset) + ", " + std::to_string(info.bytes) +
             " bytes) runs past the end of the file");
      }
      info.data = data_ + data_start + offset;
    }
  }

  GgufFile& file_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::kNotFound, path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::kInvalidArgument, path + ": not a regular file");
  }
  if (st.st_size < 4) {
    ::close(fd);
    throw Error(ErrorCode::kCorrupt, path + ": not a GGUF file (too short)");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file referenced
  if (map == MAP_FAILED) {
    throw Error(ErrorCode::kResourceExhausted, path + ": mmap failed: " + std::strerror(map_errno));
  }
  file->map_ = map;
  file->map_size_ = size;
  Parser(*file, static_cast<const uint8_t*>(map), size).parse();
  return file;
}

GgufFile::~GgufFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::lookup(const std::string& key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

void GgufFile::fail_type(const std::string& key, const char* expected) const {
  throw Error(ErrorCode::kCorrupt, path_ + ": metadata key '" + key + "' is not " + expected);
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  const GgufValue* v = lookup(key);
  if (v == nullptr) return fallback;
  if (const auto* s = std::get_if<std::string>(v)) return *s;
  fail_type(key, "a string");
}

int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  const GgufValue* v = lookup(key);
  if (v == nullptr) return fallback;
  if (const auto* i = std::get_if<int64_t>(v)) return *i;
  if (const auto* u = std::get_if<uint64_t>(v)) {
    if (*u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return static_cast<int64_t>(*u);
  }
  fail_type(key, "an integer in int64 range");
}

double GgufFile::get_float(const std::string& key, double fallback) const {
  const GgufValue* v = lookup(key);
  if (v == nullptr) return fallback;
  if (const auto* d = std::get_if<double>(v)) return *d;
  // Some writers store whole-number parameters (e.g. rope base) as integers.
  if (const auto* i = std::get_if<int64_t>(v)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<uint64_t>(v)) return static_cast<double>(*u);
  fail_type(key, "a number");
}

bool GgufFile::get_bool(const std::string& key, bool fallback) const {
  const GgufValue* v = lookup(key);
  if (v == nullptr) return fallback;
  if (const auto* b = std::get_if<bool>(v)) return *b;
  fail_type(key, "a bool");
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue* v = lookup(key);
  if (v == nullptr) return {};
  if (const auto* a = std::get_if<std::vector<std::string>>(v)) return *a;
  fail_type(key, "a string array");
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue* v = lookup(key);
  if (v == nullptr) return {};
  if (const auto* a = std::get_if<std::vector<double>>(v)) return *a;
  if (const auto* a = std::get_if<std::vector<int64_t>>(v)) return std::vector<double>(a->begin(), a->end());
  fail_type(key, "a numeric array");
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue* v = lookup(key);
  if (v == nullptr) return {};
  if (const auto* a = std::get_if<std::vector<int64_t>>(v)) return *a;
  fail_type(key, "an integer array");
}

}  // namespace tidal
