#include "model/gguf_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace tidal {

static_assert(std::endian::native == std::endian::little, "GGUF fields are written in native order as little-endian");

namespace {

using enum GgufType;

[[noreturn]] void bad_value(const std::string& key, const std::string& why) {
  throw Error(ErrorCode::kInvalidArgument, "GGUF key '" + key + "': " + why);
}

bool is_unsigned(GgufType t) { return t == kU8 || t == kU16 || t == kU32 || t == kU64; }
bool is_signed(GgufType t) { return t == kI8 || t == kI16 || t == kI32 || t == kI64; }
bool is_float(GgufType t) { return t == kF32 || t == kF64; }

// Inclusive range of an integer type, as int64 where it fits. U64 values are
// held in an int64 inside arrays (see GgufValue), so any int64 is one.
std::pair<int64_t, int64_t> int_range(GgufType t) {
  switch (t) {
    case kU8: return {0, std::numeric_limits<uint8_t>::max()};
    case kU16: return {0, std::numeric_limits<uint16_t>::max()};
    case kU32: return {0, std::numeric_limits<uint32_t>::max()};
    case kI8: return {std::numeric_limits<int8_t>::min(), std::numeric_limits<int8_t>::max()};
    case kI16: return {std::numeric_limits<int16_t>::min(), std::numeric_limits<int16_t>::max()};
    case kI32: return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
    case kBool: return {0, 1};
    default: return {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
  }
}

// Scalars become the variant member the reader produces for their type, so a
// written key compares equal to the value read back.
GgufValue normalize_scalar(const std::string& key, GgufValue value, GgufType type) {
  const auto* u = std::get_if<uint64_t>(&value);
  const auto* i = std::get_if<int64_t>(&value);
  if (is_unsigned(type) && (u != nullptr || (i != nullptr && *i >= 0))) {
    const uint64_t v = u != nullptr ? *u : static_cast<uint64_t>(*i);
    if (type != kU64 && v > static_cast<uint64_t>(int_range(type).second)) bad_value(key, "value out of range");
    return v;
  }
  if (is_signed(type) && (i != nullptr || u != nullptr)) {
    if (u != nullptr && *u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      bad_value(key, "value out of range");
    }
    const int64_t v = i != nullptr ? *i : static_cast<int64_t>(*u);
    const auto [lo, hi] = int_range(type);
    if (v < lo || v > hi) bad_value(key, "value out of range");
    return v;
  }
  if ((is_float(type) && std::holds_alternative<double>(value)) ||
      (type == kBool && std::holds_alternative<bool>(value)) ||
      (type == kString && std::holds_alternative<std::string>(value))) {
    return value;
  }
  bad_value(key, "value does not match its declared type " + std::to_string(static_cast<uint32_t>(type)));
}

void check_array(const std::string& key, const GgufValue& value, GgufType element) {
  if (element == kArray) bad_value(key, "arrays need a scalar element type");
  if (element == kString) {
    if (!std::holds_alternative<std::vector<std::string>>(value)) bad_value(key, "expected an array of strings");
    return;
  }
  if (is_float(element)) {
    if (!std::holds_alternative<std::vector<double>>(value)) bad_value(key, "expected an array of numbers");
    return;
  }
  const auto* ints = std::get_if<std::vector<int64_t>>(&value);
  if (ints == nullptr) bad_value(key, "expected an array of integers");
  const auto [lo, hi] = int_range(element);
  for (int64_t v : *ints) {
    if (v < lo || v > hi) bad_value(key, "array element " + std::to_string(v) + " out of range");
  }
}

// Little-endian serialization into a growing buffer.
class Bytes {
 public:
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out_.insert(out_.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put(uint64_t{s.size()});
    out_.insert(out_.end(), s.begin(), s.end());
  }
  // One value of scalar `type` from the member normalize_scalar/check_array allow.
  void put_int(GgufType type, int64_t v) {
    switch (type) {
      case kU8: case kBool: put(static_cast<uint8_t>(v)); return;
      case kI8: put(static_cast<int8_t>(v)); return;
      case kU16: put(static_cast<uint16_t>(v)); return;
      case kI16: put(static_cast<int16_t>(v)); return;
      case kU32: put(static_cast<uint32_t>(v)); return;
      case kI32: put(static_cast<int32_t>(v)); return;
      default: put(v); return;  // U64 / I64: the same 8 bytes
    }
  }
  void put_float(GgufType type, double v) {
    if (type == kF32) {
      put(static_cast<float>(v));
    } else {
      put(v);
    }
  }
  void put_value(const GgufKey& key, const GgufValue& value) {
    if (const auto* s = std::get_if<std::string>(&value)) return put_string(*s);
    if (const auto* b = std::get_if<bool>(&value)) return put(static_cast<uint8_t>(*b));
    if (const auto* d = std::get_if<double>(&value)) return put_float(key.type, *d);
    if (const auto* u = std::get_if<uint64_t>(&value)) return put_int(key.type, static_cast<int64_t>(*u));
    if (const auto* i = std::get_if<int64_t>(&value)) return put_int(key.type, *i);
    put(static_cast<uint32_t>(key.element));
    if (const auto* a = std::get_if<std::vector<std::string>>(&value)) {
      put(uint64_t{a->size()});
      for (const std::string& s : *a) put_string(s);
    } else if (const auto* a = std::get_if<std::vector<double>>(&value)) {
      put(uint64_t{a->size()});
      for (double v : *a) put_float(key.element, v);
    } else if (const auto* a = std::get_if<std::vector<int64_t>>(&value)) {
      put(uint64_t{a->size()});
      for (int64_t v : *a) put_int(key.element, v);
    }
  }
  void pad_to(uint64_t alignment) { out_.resize((out_.size() + alignment - 1) / alignment * alignment, 0); }
  const std::vector<uint8_t>& data() const { return out_; }

 private:
  std::vector<uint8_t> out_;
};

uint64_t align_up(uint64_t n) { return (n + GgufWriter::kAlignment - 1) / GgufWriter::kAlignment * GgufWriter::kAlignment; }

// An output file created under a temporary name and renamed over `path` by
// commit(); removed again if it is never committed.
class TempFile {
 public:
  explicit TempFile(const std::string& path) : path_(path), temp_(path + ".XXXXXX") {
    const int fd = ::mkstemp(temp_.data());
    if (fd < 0) throw Error(ErrorCode::kInvalidArgument, path + ": cannot create: " + std::strerror(errno));
    ::fchmod(fd, 0644);  // mkstemp's 0600 would hide the model from other users
    file_ = ::fdopen(fd, "wb");
    if (file_ == nullptr) {
      ::close(fd);
      ::unlink(temp_.c_str());
      throw Error(ErrorCode::kResourceExhausted, path + ": cannot open for writing");
    }
    std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
  }
  ~TempFile() {
    if (file_ != nullptr) std::fclose(file_);
    if (!committed_) ::unlink(temp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, size_t n) {
    if (n != 0 && std::fwrite(data, 1, n, file_) != n) fail();
  }
  void commit() {
    const bool flushed = std::fflush(file_) == 0;
    const int closed = std::fclose(file_);
    file_ = nullptr;
    if (!flushed || closed != 0) fail();
    if (std::rename(temp_.c_str(), path_.c_str()) != 0) fail();
    committed_ = true;
  }

 private:
  [[noreturn]] void fail() const {
    throw Error(ErrorCode::kResourceExhausted, path_ + ": write failed: " + std::strerror(errno));
  }
  std::string path_;
  std::string temp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

}  // namespace

void GgufWriter::set(const std::string& key, GgufValue value, GgufType type, GgufType element) {
  if (type == kArray) {
    check_array(key, value, element);
  } else {
    value = normalize_scalar(key, std::move(value), type);
    element = type;
  }
  for (Entry& e : entries_) {
    if (e.key.name == key) {
      e = Entry{{key, type, element}, std::move(value)};
      return;
    }
  }
  entries_.push_back(Entry{{key, type, element}, std::move(value)});
}

void GgufWriter::copy_metadata(const GgufFile& file) {
  for (const GgufKey& k : file.keys()) set(k.name, file.metadata().at(k.name), k.type, k.element);
}

void GgufWriter::remove(const std::string& key) {
  std::erase_if(entries_, [&](const Entry& e) { return e.key.name == key; });
}

bool GgufWriter::has(const std::string& key) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.key.name == key; });
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& shape, DType type,
                            const uint8_t* data, size_t bytes) {
  const std::optional<uint32_t> ggml_type = ggml_type_of(type);
  const std::string what = "GGUF tensor '" + name + "'";
  if (!ggml_type) throw Error(ErrorCode::kInvalidArgument, what + ": " + std::string(dtype_name(type)) + " has no ggml type");
  if (shape.empty() || shape.size() > 4) throw Error(ErrorCode::kInvalidArgument, what + ": rank must be 1..4");
  int64_t elements = 1;
  for (int64_t d : shape) {
    if (d <= 0) throw Error(ErrorCode::kInvalidArgument, what + ": dimensions must be positive");
    elements *= d;
  }
  const int64_t block = dtype_block_elems(type);
  if (shape[0] % block != 0 ||
      bytes != static_cast<size_t>(elements / block) * static_cast<size_t>(dtype_block_bytes(type))) {
    throw Error(ErrorCode::kInvalidArgument, what + ": " + std::to_string(bytes) + " bytes do not match its shape");
  }
  if (std::any_of(tensors_.begin(), tensors_.end(), [&](const Tensor& t) { return t.name == name; })) {
    throw Error(ErrorCode::kInvalidArgument, what + " added twice");
  }
  tensors_.push_back(Tensor{name, shape, *ggml_type, data, bytes});
}

void GgufWriter::write(const std::string& path) {
  set("general.alignment", uint64_t{kAlignment}, kU32);
  Bytes header;
  header.put(std::array<char, 4>{'G', 'G', 'U', 'F'});
  header.put(uint32_t{3});
  header.put(uint64_t{tensors_.size()});
  header.put(uint64_t{entries_.size()});
  for (const Entry& e : entries_) {
    header.put_string(e.key.name);
    header.put(static_cast<uint32_t>(e.key.type));
    header.put_value(e.key, e.value);
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    header.put_string(t.name);
    header.put(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) header.put(static_cast<uint64_t>(d));
    header.put(t.ggml_type);
    header.put(offset);
    offset = align_up(offset + t.bytes);
  }
  header.pad_to(kAlignment);

  TempFile out(path);
  out.write(header.data().data(), header.data().size());
  static constexpr uint8_t kZeros[kAlignment] = {};
  for (const Tensor& t : tensors_) {
    out.write(t.data, t.bytes);
    out.write(kZeros, align_up(t.bytes) - t.bytes);
  }
  out.commit();
}

}  // namespace tidal
