// GgufWriter: every metadata value type and tensors written and read back by
// GgufFile, values the declared type cannot hold refused, and failed writes
// leaving nothing behind.
#include "model/gguf_writer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"

namespace tidal {
namespace {

namespace fs = std::filesystem;
using enum GgufType;

class GgufWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tidal_gguf_writer_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

template <typename F>
void expect_invalid(F&& fn, const std::string& message_part) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing '" << message_part << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(message_part), std::string::npos) << e.what();
  }
}

struct KeyCase {
  std::string name;
  GgufValue value;
  GgufType type;
  GgufType element;
};

// One key of every scalar type at the edges of its range, and an array of
// every element type.
std::vector<KeyCase> every_type() {
  constexpr int64_t i64_min = std::numeric_limits<int64_t>::min();
  constexpr int64_t i64_max = std::numeric_limits<int64_t>::max();
  return {
      {"u8", uint64_t{255}, kU8, kU8},
      {"i8", int64_t{-128}, kI8, kI8},
      {"u16", uint64_t{65535}, kU16, kU16},
      {"i16", int64_t{-32768}, kI16, kI16},
      {"u32", uint64_t{4294967295u}, kU32, kU32},
      {"i32", int64_t{-2147483648LL}, kI32, kI32},
      {"u64", std::numeric_limits<uint64_t>::max(), kU64, kU64},
      {"i64", i64_min, kI64, kI64},
      {"f32", double{0.1f}, kF32, kF32},
      {"f64", 0.1, kF64, kF64},
      {"bool.true", true, kBool, kBool},
      {"bool.false", false, kBool, kBool},
      {"string", std::string("h\xc3\xa9llo\0world", 12), kString, kString},
      {"string.empty", std::string(), kString, kString},
      {"array.u8", std::vector<int64_t>{0, 255}, kArray, kU8},
      {"array.i8", std::vector<int64_t>{-128, 127}, kArray, kI8},
      {"array.u16", std::vector<int64_t>{0, 65535}, kArray, kU16},
      {"array.i16", std::vector<int64_t>{-32768, 32767}, kArray, kI16},
      {"array.u32", std::vector<int64_t>{0, 4294967295LL}, kArray, kU32},
      {"array.i32", std::vector<int64_t>{-2147483648LL, 2147483647}, kArray, kI32},
      {"array.u64", std::vector<int64_t>{0, -1}, kArray, kU64},  // -1: 2^64 - 1 as the reader holds it
      {"array.i64", std::vector<int64_t>{i64_min, i64_max}, kArray, kI64},
      {"array.f32", std::vector<double>{double{1.5f}, double{-0.1f}}, kArray, kF32},
      {"array.f64", std::vector<double>{0.1, -1e300}, kArray, kF64},
      {"array.bool", std::vector<int64_t>{1, 0, 1}, kArray, kBool},
      {"array.string", std::vector<std::string>{"<s>", "", "\xe2\x96\x81the"}, kArray, kString},
      {"array.empty", std::vector<std::string>{}, kArray, kString},
  };
}

TEST_F(GgufWriterTest, MetadataOfEveryTypeRoundTrips) {
  GgufWriter w;
  const std::vector<KeyCase> cases = every_type();
  for (const KeyCase& c : cases) w.set(c.name, c.value, c.type, c.element);
  w.write(path("meta.gguf"));

  const auto file = GgufFile::open(path("meta.gguf"));
  EXPECT_EQ(file->version(), 3u);
  ASSERT_EQ(file->keys().size(), cases.size() + 1);  // and general.alignment, added by write()
  for (size_t i = 0; i < cases.size(); ++i) {
    const KeyCase& c = cases[i];
    SCOPED_TRACE(c.name);
    const GgufKey& key = file->keys()[i];
    EXPECT_EQ(key.name, c.name);
    EXPECT_EQ(key.type, c.type);
    EXPECT_EQ(key.element, c.element);
    EXPECT_EQ(file->metadata().at(c.name), c.value);
  }
  EXPECT_EQ(file->keys().back().type, kU32);
  EXPECT_EQ(file->get_int("general.alignment", 0), int64_t(GgufWriter::kAlignment));
  EXPECT_TRUE(file->tensors().empty());
}

TEST_F(GgufWriterTest, CopiedMetadataIsWrittenBackIdentically) {
  GgufWriter w;
  for (const KeyCase& c : every_type()) w.set(c.name, c.value, c.type, c.element);
  w.write(path("a.gguf"));
  const auto a = GgufFile::open(path("a.gguf"));
  GgufWriter copy;
  copy.copy_metadata(*a);
  copy.write(path("b.gguf"));
  EXPECT_EQ(fs::file_size(path("a.gguf")), fs::file_size(path("b.gguf")));
  const auto b = GgufFile::open(path("b.gguf"));
  EXPECT_EQ(a->metadata(), b->metadata());
  ASSERT_EQ(a->keys().size(), b->keys().size());
  for (size_t i = 0; i < a->keys().size(); ++i) {
    EXPECT_EQ(a->keys()[i].name, b->keys()[i].name);
    EXPECT_EQ(a->keys()[i].type, b->keys()[i].type);
    EXPECT_EQ(a->keys()[i].element, b->keys()[i].element);
  }
}

TEST_F(GgufWriterTest, SettingAgainReplacesInPlaceAndRemoveDrops) {
  GgufWriter w;
  w.set_u32("first", 1);
  w.set_string("second", "x");
  w.set_f32("first", 2.5f);
  w.set_u32("third", 3);
  w.remove("second");
  EXPECT_FALSE(w.has("second"));
  EXPECT_TRUE(w.has("third"));
  w.write(path("set.gguf"));
  const auto file = GgufFile::open(path("set.gguf"));
  ASSERT_EQ(file->keys().size(), 3u);
  EXPECT_EQ(file->keys()[0].name, "first");
  EXPECT_EQ(file->keys()[0].type, kF32);
  EXPECT_EQ(file->get_float("first", 0), 2.5);
  EXPECT_EQ(file->keys()[1].name, "third");
}

TEST_F(GgufWriterTest, ValuesTheTypeCannotHoldAreRefused) {
  GgufWriter w;
  expect_invalid([&] { w.set("k", uint64_t{256}, kU8); }, "out of range");
  expect_invalid([&] { w.set("k", int64_t{-129}, kI8); }, "out of range");
  expect_invalid([&] { w.set("k", int64_t{-1}, kU32); }, "does not match");
  expect_invalid([&] { w.set("k", std::numeric_limits<uint64_t>::max(), kI64); }, "out of range");
  expect_invalid([&] { w.set("k", std::string("1"), kU32); }, "does not match");
  expect_invalid([&] { w.set("k", 1.0, kBool); }, "does not match");
  expect_invalid([&] { w.set("k", std::vector<int64_t>{1}, kArray); }, "element type");
  expect_invalid([&] { w.set("k", std::vector<int64_t>{1}, kArray, kArray); }, "element type");
  expect_invalid([&] { w.set("k", std::vector<int64_t>{70000}, kArray, kU16); }, "out of range");
  expect_invalid([&] { w.set("k", std::vector<int64_t>{2}, kArray, kBool); }, "out of range");
  expect_invalid([&] { w.set("k", std::vector<double>{1.0}, kArray, kI32); }, "array of integers");
  expect_invalid([&] { w.set("k", std::vector<std::string>{"a"}, kArray, kF32); }, "array of numbers");
  expect_invalid([&] { w.set("k", uint64_t{1}, kString); }, "does not match");
  EXPECT_FALSE(w.has("k"));
  // Integers given as the other signedness are accepted when they fit.
  w.set("u", int64_t{7}, kU16);
  w.set("i", uint64_t{7}, kI16);
  EXPECT_TRUE(w.has("u") && w.has("i"));
}

TEST_F(GgufWriterTest, TensorsAreAlignedAndByteExact) {
  std::vector<float> a(5);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.5f * float(i);
  std::vector<uint8_t> b(3 * 7);
  for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(i * 13);
  std::vector<uint8_t> q(34 * 2, 0x5a);  // two Q8_0 blocks
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.add_tensor("a", {5}, DType::F32, reinterpret_cast<const uint8_t*>(a.data()), a.size() * sizeof(float));
  w.add_tensor("b", {7, 3}, DType::I8, b.data(), b.size());
  w.add_tensor("q", {32, 2}, DType::Q8_0, q.data(), q.size());
  w.write(path("t.gguf"));

  const auto file = GgufFile::open(path("t.gguf"));
  ASSERT_EQ(file->tensors().size(), 3u);
  const auto* base = file->tensors()[0].data;
  for (const GgufTensorInfo& t : file->tensors()) {
    EXPECT_EQ(static_cast<uint64_t>(t.data - base) % GgufWriter::kAlignment, 0u) << t.name;
  }
  const GgufTensorInfo* ta = file->find_tensor("a");
  const GgufTensorInfo* tb = file->find_tensor("b");
  const GgufTensorInfo* tq = file->find_tensor("q");
  ASSERT_TRUE(ta && tb && tq);
  EXPECT_EQ(ta->type, DType::F32);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{5}));
  EXPECT_EQ(std::memcmp(ta->data, a.data(), ta->bytes), 0);
  EXPECT_EQ(tb->type, DType::I8);
  EXPECT_EQ(tb->shape, (std::vector<int64_t>{7, 3}));
  ASSERT_EQ(tb->bytes, b.size());
  EXPECT_EQ(std::memcmp(tb->data, b.data(), b.size()), 0);
  EXPECT_EQ(tq->type, DType::Q8_0);
  ASSERT_EQ(tq->bytes, q.size());
  EXPECT_EQ(std::memcmp(tq->data, q.data(), q.size()), 0);
}

TEST_F(GgufWriterTest, TensorsThatWouldNotReadBackAreRefused) {
  std::vector<uint8_t> bytes(256);
  GgufWriter w;
  expect_invalid([&] { w.add_tensor("t", {4}, DType::F32, bytes.data(), 12); }, "do not match its shape");
  expect_invalid([&] { w.add_tensor("t", {48}, DType::Q8_0, bytes.data(), 51); }, "do not match its shape");
  expect_invalid([&] { w.add_tensor("t", {8}, DType::I4_G32, bytes.data(), 4); }, "no ggml type");
  expect_invalid([&] { w.add_tensor("t", {}, DType::F32, bytes.data(), 0); }, "rank");
  expect_invalid([&] { w.add_tensor("t", {4, 0}, DType::F32, bytes.data(), 0); }, "positive");
  w.add_tensor("t", {4}, DType::F32, bytes.data(), 16);
  expect_invalid([&] { w.add_tensor("t", {4}, DType::F32, bytes.data(), 16); }, "added twice");
}

TEST_F(GgufWriterTest, FailedWriteLeavesNoFile) {
  GgufWriter w;
  w.set_u32("k", 1);
  expect_invalid([&] { w.write(path("missing_dir/out.gguf")); }, "cannot create");
  EXPECT_FALSE(fs::exists(path("missing_dir")));
  w.write(path("out.gguf"));
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"out.gguf"}) << "the temporary file is renamed, not left behind";
}

}  // namespace
}  // namespace tidal
