// Model loading: llama2.c checkpoints, GGUF files written by the test itself
// (every supported tensor type), the bundled vocab-only GGUF, and corrupt or
// truncated inputs, which must all end in a tidal::Error and never a crash.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/aligned_vector.h"
#include "core/dequantize.h"
#include "core/error.h"
#include "model/gguf.h"
#include "model/loader.h"

namespace tidal {
namespace {

namespace fs = std::filesystem;

const std::string kData = TIDAL_TEST_DATA;
const std::string kStories = kData + "/stories260K/stories260K.bin";
const std::string kAidreams = kData + "/aidreams260K/aidreams260K.bin";
const std::string kVocabGguf = kData + "/llama-spm-vocab/ggml-vocab-llama-spm.gguf";

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

float float_at(const std::vector<uint8_t>& bytes, size_t offset) {
  float f;
  std::memcpy(&f, bytes.data() + offset, sizeof(f));
  return f;
}

// Runs `fn` and returns the tidal::Error it threw (any other exception
// escapes and fails the test).
template <typename F>
std::optional<Error> error_from(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

template <typename F>
void expect_error(F&& fn, ErrorCode code, const std::string& message_part = "") {
  const std::optional<Error> e = error_from(fn);
  ASSERT_TRUE(e.has_value()) << "expected an error containing '" << message_part << "'";
  EXPECT_EQ(e->code(), code) << e->what();
  EXPECT_NE(std::string(e->what()).find(message_part), std::string::npos) << e->what();
  EXPECT_EQ(std::string(e->what()).find('\n'), std::string::npos) << "messages are one line";
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tidal_loaders_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// ---------------------------------------------------------------------------
// A minimal GGUF writer, enough to produce llama files of every type we read.

uint32_t ggml_type_id(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 8;
    case DType::BF16: return 30;
    default: break;  // tidal's integer formats are not ggml types
  }
  ADD_FAILURE() << "no ggml type for " << dtype_name(t);
  return 0;
}

// How GgufWriter lays out the file; the overrides corrupt the header counts.
struct GgufLayout {
  uint32_t version = 3;
  std::optional<uint64_t> kv_count = std::nullopt;
  std::optional<uint64_t> tensor_count = std::nullopt;
  uint64_t alignment = 32;  // must match any general.alignment key added
};

class GgufWriter {
 public:

  void add_u32(const std::string& key, uint32_t v) {
    key_and_type(key, 4);
    put(v);
  }
  void add_f32(const std::string& key, float v) {
    key_and_type(key, 6);
    put(v);
  }
  void add_string(const std::string& key, const std::string& v) {
    key_and_type(key, 8);
    put_string(kv_, v);
  }
  void add_string_array(const std::string& key, const std::vector<std::string>& v) {
    key_and_type(key, 9);
    put(uint32_t{8});
    put(uint64_t{v.size()});
    for (const std::string& s : v) put_string(kv_, s);
  }
  // Appends raw bytes as the value of `key` (for malformed values).
  void add_raw(const std::string& key, uint32_t type, const std::vector<uint8_t>& value) {
    key_and_type(key, type);
    kv_.insert(kv_.end(), value.begin(), value.end());
  }

  void add_tensor(const std::string& name, std::vector<uint64_t> shape, uint32_t type, std::vector<uint8_t> data) {
    tensors_.push_back({name, std::move(shape), type, std::move(data)});
  }

  // Returns the file; `header_bytes` gets the start of the data section.
  std::vector<uint8_t> serialize(const GgufLayout& layout = {}, size_t* header_bytes = nullptr) const {
    std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
    put_to(out, layout.version);
    put_to(out, layout.tensor_count.value_or(tensors_.size()));
    put_to(out, layout.kv_count.value_or(n_kv_));
    out.insert(out.end(), kv_.begin(), kv_.end());
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
      put_string(out, t.name);
      put_to(out, static_cast<uint32_t>(t.shape.size()));
      for (uint64_t d : t.shape) put_to(out, d);
      put_to(out, t.type);
      put_to(out, offset);
      offset = align(offset + t.data.size(), layout.alignment);
    }
    out.resize(align(out.size(), layout.alignment), 0);
    if (header_bytes != nullptr) *header_bytes = out.size();
    for (const Tensor& t : tensors_) {
      out.insert(out.end(), t.data.begin(), t.data.end());
      if (&t != &tensors_.back()) out.resize(align(out.size(), layout.alignment), 0);
    }
    return out;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> shape;
    uint32_t type;
    std::vector<uint8_t> data;
  };

  static uint64_t align(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }
  template <typename T>
  static void put_to(std::vector<uint8_t>& out, T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
  }
  template <typename T>
  void put(T v) { put_to(kv_, v); }
  static void put_string(std::vector<uint8_t>& out, const std::string& s) {
    put_to(out, uint64_t{s.size()});
    out.insert(out.end(), s.begin(), s.end());
  }
  void key_and_type(const std::string& key, uint32_t type) {
    put_string(kv_, key);
    put(type);
    ++n_kv_;
  }

  std::vector<uint8_t> kv_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

// What the test wrote for one tensor: the source floats and their encoding.
struct Written {
  DType type;
  int64_t rows, cols;
  std::vector<float> values;
  std::vector<uint8_t> bytes;
};

constexpr int kDim = 64, kHidden = 96, kLayers = 2, kHeads = 4, kKvHeads = 2, kVocab = 40, kCtx = 128;
constexpr int kHeadDim = kDim / kHeads;

struct TinyLlama {
  GgufWriter writer;
  std::map<std::string, Written> tensors;

  void add(const std::string& name, DType type, int64_t rows, int64_t cols, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 0.5f);
    Written w{type, rows, cols, std::vector<float>(static_cast<size_t>(rows * cols)), {}};
    for (float& v : w.values) v = normal(rng);
    w.bytes.resize(dtype_row_bytes(type, cols) * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      quantize_row(type, &w.values[r * cols], &w.bytes[r * dtype_row_bytes(type, cols)], cols);
    }
    std::vector<uint64_t> shape = {static_cast<uint64_t>(cols)};
    if (rows > 1) shape.push_back(static_cast<uint64_t>(rows));
    writer.add_tensor(name, shape, ggml_type_id(type), w.bytes);
    tensors.emplace(name, std::move(w));
  }
};

// A 2-layer GQA llama using every tensor type (including F16/BF16 norms).
// `kv_heads_in_metadata` lets a test make the metadata disagree with the tensors.
TinyLlama make_tiny_llama(bool tied, int kv_heads_in_metadata = kKvHeads) {
  TinyLlama m;
  GgufWriter& w = m.writer;
  w.add_string("general.architecture", "llama");
  w.add_string("general.name", "tiny-test");
  w.add_u32("llama.embedding_length", kDim);
  w.add_u32("llama.feed_forward_length", kHidden);
  w.add_u32("llama.block_count", kLayers);
  w.add_u32("llama.attention.head_count", kHeads);
  w.add_u32("llama.attention.head_count_kv", static_cast<uint32_t>(kv_heads_in_metadata));
  w.add_u32("llama.context_length", kCtx);
  w.add_f32("llama.rope.freq_base", 500000.0f);
  w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
  w.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>"});

  std::mt19937 rng(1234);
  m.add("token_embd.weight", DType::Q8_0, kVocab, kDim, rng);
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    m.add(p + "attn_norm.weight", DType::F32, 1, kDim, rng);
    m.add(p + "attn_q.weight", DType::Q4_1, kDim, kDim, rng);
    m.add(p + "attn_k.weight", DType::Q4_0, kKvHeads * kHeadDim, kDim, rng);
    m.add(p + "attn_v.weight", DType::F16, kKvHeads * kHeadDim, kDim, rng);
    m.add(p + "attn_output.weight", DType::BF16, kDim, kDim, rng);
    m.add(p + "ffn_norm.weight", DType::F16, 1, kDim, rng);
    m.add(p + "ffn_gate.weight", DType::Q4_0, kHidden, kDim, rng);
    m.add(p + "ffn_up.weight", DType::Q8_0, kHidden, kDim, rng);
    m.add(p + "ffn_down.weight", DType::F32, kDim, kHidden, rng);
  }
  m.add("output_norm.weight", DType::BF16, 1, kDim, rng);
  if (!tied) m.add("output.weight", DType::Q4_1, kVocab, kDim, rng);
  return m;
}

std::vector<float> dequantized(const Written& w) {
  std::vector<float> out(w.values.size());
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w.type, &w.bytes[r * dtype_row_bytes(w.type, w.cols)], &out[r * w.cols], w.cols);
  }
  return out;
}

// The loaded view holds exactly the written bytes, and those decode to
// values near the originals.
void expect_weight(const Weight& got, const Written& w, const std::string& name) {
  SCOPED_TRACE(name);
  ASSERT_EQ(got.type, w.type);
  ASSERT_EQ(got.rows, w.rows);
  ASSERT_EQ(got.cols, w.cols);
  ASSERT_EQ(std::memcmp(got.data, w.bytes.data(), w.bytes.size()), 0);
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(got.type, got.row(r), row.data(), w.cols);
    for (int64_t c = 0; c < w.cols; ++c) ASSERT_NEAR(row[c], w.values[r * w.cols + c], 0.25f);
  }
}

void expect_vector(const std::vector<float>& got, const Written& w, const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(got, dequantized(w));
}

// ---------------------------------------------------------------------------
// llama2.c

TEST(Llama2c, Stories260K) {
  const Model m = load_llama2c(kStories);
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.name, "stories260K");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(m.lm_head.data, m.token_embedding.data);
  ASSERT_EQ(m.layers.size(), 5u);
  EXPECT_EQ(m.layers[0].wk.rows, 32);
  EXPECT_EQ(m.layers[0].wk.cols, 64);
  EXPECT_EQ(m.layers[0].w_down.rows, 64);
  EXPECT_EQ(m.layers[0].w_down.cols, 172);
  EXPECT_EQ(m.final_norm.size(), 64u);

  const std::vector<uint8_t> file = read_file(kStories);
  float first;
  std::memcpy(&first, m.token_embedding.data, sizeof(first));
  EXPECT_EQ(first, float_at(file, 28));
  EXPECT_EQ(m.layers[0].attn_norm[0], float_at(file, 28 + 4 * 512 * 64));
  // rms_final follows the last layer's w3 (up) matrix.
  const size_t per_layer = 2 * 64 + 2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64;
  const size_t final_norm_at = 28 + 4 * (512 * 64 + 5 * per_layer);
  EXPECT_EQ(m.final_norm[0], float_at(file, final_norm_at));
  const Weight& up = m.layers[4].w_up;
  float last_up;
  std::memcpy(&last_up, up.data + up.bytes() - sizeof(float), sizeof(float));
  EXPECT_EQ(last_up, float_at(file, final_norm_at - 4));
  // The floats start 28 bytes into the file: every matrix is copied to a
  // cache-line boundary for the vector kernels.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m.token_embedding.data) % kSimdAlignment, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(up.data) % kSimdAlignment, 0u);
}

TEST(Llama2c, Aidreams260K) {
  const Model m = load_llama2c(kAidreams);
  EXPECT_EQ(m.config.n_layers, 4);
  EXPECT_EQ(m.config.n_heads, 4);
  EXPECT_EQ(m.config.n_kv_heads, 4);
  EXPECT_EQ(m.config.max_seq_len, 128);
  EXPECT_EQ(m.config.vocab_size, 512);
  EXPECT_EQ(m.layers.size(), 4u);
}

// A small checkpoint whose float at index i is i, so each view's first
// element says where it points.
std::vector<uint8_t> make_llama2c(const std::vector<int32_t>& header, size_t n_floats) {
  std::vector<uint8_t> out(header.size() * 4 + n_floats * 4);
  std::memcpy(out.data(), header.data(), header.size() * 4);
  for (size_t i = 0; i < n_floats; ++i) {
    const float f = static_cast<float>(i);
    std::memcpy(out.data() + header.size() * 4 + i * 4, &f, 4);
  }
  return out;
}

// dim 8, hidden 16, 2 layers, 2 heads (head_dim 4), 1 kv head, 10 tokens
// with a separate classifier, 4 positions.
const std::vector<int32_t> kSmallHeader = {8, 16, 2, 2, 1, -10, 4};
constexpr size_t kSmallFloats = 1368;

float first(const Weight& w) {
  float f;
  std::memcpy(&f, w.data, sizeof(f));
  return f;
}

using Llama2cFile = TempDir;

TEST_F(Llama2cFile, UnsharedClassifierLayout) {
  write_file(path("small.bin"), make_llama2c(kSmallHeader, kSmallFloats));
  const Model m = load_llama2c(path("small.bin"));
  EXPECT_EQ(m.config.name, "small");
  EXPECT_EQ(m.config.vocab_size, 10);
  EXPECT_FALSE(m.config.tied_embeddings);
  ASSERT_EQ(m.layers.size(), 2u);
  const LayerWeights& l1 = m.layers[1];
  EXPECT_EQ(first(m.token_embedding), 0.0f);
  EXPECT_EQ(l1.attn_norm[0], 88.0f);
  EXPECT_EQ(first(l1.wq), 96.0f + 64);
  EXPECT_EQ(first(l1.wk), 224.0f + 32);
  EXPECT_EQ(first(l1.wv), 288.0f + 32);
  EXPECT_EQ(first(l1.wo), 352.0f + 64);
  EXPECT_EQ(l1.ffn_norm[0], 488.0f);
  EXPECT_EQ(first(l1.w_gate), 496.0f + 128);
  EXPECT_EQ(first(l1.w_down), 752.0f + 128);
  EXPECT_EQ(first(l1.w_up), 1008.0f + 128);
  EXPECT_EQ(l1.w_down.rows, 8);
  EXPECT_EQ(l1.w_down.cols, 16);
  EXPECT_EQ(l1.wk.rows, 4);
  EXPECT_EQ(m.final_norm[0], 1264.0f);
  EXPECT_EQ(first(m.lm_head), 1288.0f);  // after the two 4 x 2 RoPE tables
  EXPECT_EQ(m.lm_head.rows, 10);
}

TEST_F(Llama2cFile, WrongSizesAreCorrupt) {
  const std::vector<uint8_t> good = make_llama2c(kSmallHeader, kSmallFloats);
  for (size_t cut = 0; cut < good.size(); cut += cut < 100 ? 7 : 101) {
    write_file(path("cut.bin"), std::vector<uint8_t>(good.begin(), good.begin() + cut));
    expect_error([&] { load_llama2c(path("cut.bin")); }, ErrorCode::kCorrupt, path("cut.bin") + ": ");
  }
  std::vector<uint8_t> padded = good;
  padded.push_back(0);
  write_file(path("padded.bin"), padded);
  expect_error([&] { load_llama2c(path("padded.bin")); }, ErrorCode::kCorrupt, "bytes but the file has");

  const std::vector<uint8_t> stories = read_file(kStories);
  write_file(path("stories.bin"), std::vector<uint8_t>(stories.begin(), stories.end() - 4));
  expect_error([&] { load_llama2c(path("stories.bin")); }, ErrorCode::kCorrupt,
               "header implies 1056540 bytes but the file has 1056536");
}

TEST_F(Llama2cFile, InconsistentHeadersAreCorrupt) {
  const std::vector<std::vector<int32_t>> headers = {
      {8, 16, 2, 0, 1, 10, 4},                  // no heads
      {8, 16, 2, 3, 1, 10, 4},                  // dim not divisible by heads
      {8, 16, 2, 2, 3, 10, 4},                  // heads not divisible by kv heads
      {8, 16, 2, 2, 1, INT32_MIN, 4},           // vocab cannot be negated
      {8, 16, -2, 2, 1, 10, 4},                 // negative layers
      {2147483644, 2147483647, 2147483647, 4, 4, 2147483647, 2147483647},  // sizes overflow 64 bits
  };
  for (const auto& h : headers) {
    write_file(path("bad.bin"), make_llama2c(h, 16));
    expect_error([&] { load_llama2c(path("bad.bin")); }, ErrorCode::kCorrupt);
  }
}

TEST(Llama2c, MissingFile) {
  expect_error([] { load_llama2c(kData + "/nope.bin"); }, ErrorCode::kNotFound, "nope.bin");
}

// ---------------------------------------------------------------------------
// GGUF

using GgufTest = TempDir;

TEST_F(GgufTest, TinyLlamaUntied) {
  TinyLlama t = make_tiny_llama(/*tied=*/false);
  write_file(path("tiny.gguf"), t.writer.serialize());
  const Model m = load_gguf(path("tiny.gguf"));
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.name, "tiny-test");
  EXPECT_EQ(c.dim, kDim);
  EXPECT_EQ(c.hidden_dim, kHidden);
  EXPECT_EQ(c.n_layers, kLayers);
  EXPECT_EQ(c.n_heads, kHeads);
  EXPECT_EQ(c.n_kv_heads, kKvHeads);
  EXPECT_EQ(c.head_dim, kHeadDim);
  EXPECT_EQ(c.vocab_size, kVocab);
  EXPECT_EQ(c.max_seq_len, kCtx);
  EXPECT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rms_eps, 1e-6f);
  EXPECT_FALSE(c.tied_embeddings);

  expect_weight(m.token_embedding, t.tensors.at("token_embd.weight"), "token_embd");
  expect_weight(m.lm_head, t.tensors.at("output.weight"), "output");
  expect_vector(m.final_norm, t.tensors.at("output_norm.weight"), "output_norm");
  ASSERT_EQ(m.layers.size(), static_cast<size_t>(kLayers));
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const LayerWeights& layer = m.layers[l];
    expect_vector(layer.attn_norm, t.tensors.at(p + "attn_norm.weight"), p + "attn_norm");
    expect_vector(layer.ffn_norm, t.tensors.at(p + "ffn_norm.weight"), p + "ffn_norm");
    expect_weight(layer.wq, t.tensors.at(p + "attn_q.weight"), p + "attn_q");
    expect_weight(layer.wk, t.tensors.at(p + "attn_k.weight"), p + "attn_k");
    expect_weight(layer.wv, t.tensors.at(p + "attn_v.weight"), p + "attn_v");
    expect_weight(layer.wo, t.tensors.at(p + "attn_output.weight"), p + "attn_output");
    expect_weight(layer.w_gate, t.tensors.at(p + "ffn_gate.weight"), p + "ffn_gate");
    expect_weight(layer.w_up, t.tensors.at(p + "ffn_up.weight"), p + "ffn_up");
    expect_weight(layer.w_down, t.tensors.at(p + "ffn_down.weight"), p + "ffn_down");
  }
}

TEST_F(GgufTest, TinyLlamaTiedDequantizedToF32) {
  TinyLlama t = make_tiny_llama(/*tied=*/true);
  write_file(path("tiny.gguf"), t.writer.serialize({.version = 2}));

  const Model q = load_model(path("tiny.gguf"));
  EXPECT_TRUE(q.config.tied_embeddings);
  EXPECT_EQ(q.lm_head.data, q.token_embedding.data);

  const Model m = load_model(path("tiny.gguf"), {.dequantize_to_f32 = true});
  EXPECT_TRUE(m.config.tied_embeddings);
  EXPECT_EQ(m.lm_head.data, m.token_embedding.data);
  auto expect_f32 = [&](const Weight& w, const std::string& name) {
    SCOPED_TRACE(name);
    const Written& src = t.tensors.at(name);
    ASSERT_EQ(w.type, DType::F32);
    ASSERT_EQ(w.rows, src.rows);
    ASSERT_EQ(w.cols, src.cols);
    const std::vector<float> want = dequantized(src);
    EXPECT_EQ(std::memcmp(w.data, want.data(), want.size() * sizeof(float)), 0);
  };
  expect_f32(m.token_embedding, "token_embd.weight");
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    expect_f32(m.layers[l].wq, p + "attn_q.weight");
    expect_f32(m.layers[l].wk, p + "attn_k.weight");
    expect_f32(m.layers[l].wv, p + "attn_v.weight");
    expect_f32(m.layers[l].wo, p + "attn_output.weight");
    expect_f32(m.layers[l].w_gate, p + "ffn_gate.weight");
    expect_f32(m.layers[l].w_up, p + "ffn_up.weight");
    expect_f32(m.layers[l].w_down, p + "ffn_down.weight");
  }
}

TEST_F(GgufTest, MetadataAccessors) {
  GgufWriter w;
  w.add_u32("general.alignment", 64);
  w.add_string("s", "hello");
  w.add_f32("f", 0.25f);
  w.add_raw("i8", 1, {0xfe});                              // -2
  w.add_raw("b", 7, {1});
  w.add_raw("u64", 10, {0, 0, 0, 0, 0, 0, 0, 0x80});     // 2^63: not an int64
  w.add_raw("ints", 9, {5, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0});  // i32 [-1, 7]
  w.add_string_array("strs", {"a", "", "c"});
  w.add_tensor("x", {4}, 0, std::vector<uint8_t>(16, 0));
  w.add_tensor("y", {32, 2}, 8, std::vector<uint8_t>(68, 0));
  write_file(path("m.gguf"), w.serialize({.alignment = 64}));

  const auto f = GgufFile::open(path("m.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->metadata().size(), 8u);
  EXPECT_EQ(f->get_int("general.alignment", 0), 64);
  EXPECT_EQ(f->get_string("s"), "hello");
  EXPECT_EQ(f->get_string("absent", "dflt"), "dflt");
  EXPECT_EQ(f->get_float("f", 0), 0.25);
  EXPECT_EQ(f->get_float("general.alignment", 0), 64.0);
  EXPECT_EQ(f->get_int("i8", 0), -2);
  EXPECT_TRUE(f->get_bool("b", false));
  EXPECT_EQ(f->get_int_array("ints"), (std::vector<int64_t>{-1, 7}));
  EXPECT_EQ(f->get_float_array("ints"), (std::vector<double>{-1.0, 7.0}));
  EXPECT_EQ(f->get_string_array("strs"), (std::vector<std::string>{"a", "", "c"}));
  EXPECT_TRUE(f->get_string_array("absent").empty());
  expect_error([&] { f->get_int("s", 0); }, ErrorCode::kCorrupt, "'s'");
  expect_error([&] { f->get_string("f"); }, ErrorCode::kCorrupt, "'f'");
  expect_error([&] { f->get_int("u64", 0); }, ErrorCode::kCorrupt, "'u64'");
  expect_error([&] { f->get_string_array("ints"); }, ErrorCode::kCorrupt, "'ints'");

  ASSERT_EQ(f->tensors().size(), 2u);
  const GgufTensorInfo* y = f->find_tensor("y");
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(y->type, DType::Q8_0);
  EXPECT_EQ(y->shape, (std::vector<int64_t>{32, 2}));
  EXPECT_EQ(y->bytes, 68u);
  EXPECT_EQ(y->data - f->find_tensor("x")->data, 64);  // offsets honour general.alignment
  EXPECT_EQ(f->find_tensor("z"), nullptr);
}

TEST(Gguf, VocabOnlyFile) {
  const auto f = GgufFile::open(kVocabGguf);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_EQ(f->metadata().size(), 22u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "llama");
  const std::vector<std::string> tokens = f->get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 32000u);
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(f->get_float_array("tokenizer.ggml.scores").size(), 32000u);
  EXPECT_EQ(f->get_int_array("tokenizer.ggml.token_type").size(), 32000u);

  const std::optional<Error> e = error_from([] { load_gguf(kVocabGguf); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->code() == ErrorCode::kCorrupt || e->code() == ErrorCode::kNotFound) << e->what();
  EXPECT_EQ(std::string(e->what()).rfind(kVocabGguf + ": ", 0), 0u) << e->what();
}

TEST_F(GgufTest, TruncatedAnywhereIsCorrupt) {
  TinyLlama t = make_tiny_llama(/*tied=*/false);
  size_t header_bytes = 0;
  const std::vector<uint8_t> good = t.writer.serialize({}, &header_bytes);
  std::vector<size_t> cuts;
  for (size_t cut = 0; cut < header_bytes; cut += 7) cuts.push_back(cut);
  for (size_t cut = header_bytes; cut < good.size(); cut += 997) cuts.push_back(cut);
  cuts.push_back(good.size() - 1);
  for (size_t cut : cuts) {
    SCOPED_TRACE(cut);
    write_file(path("cut.gguf"), std::vector<uint8_t>(good.begin(), good.begin() + cut));
    expect_error([&] { GgufFile::open(path("cut.gguf")); }, ErrorCode::kCorrupt, path("cut.gguf") + ": ");
    expect_error([&] { load_model(path("cut.gguf")); }, cut < 4 ? ErrorCode::kInvalidArgument : ErrorCode::kCorrupt);
  }
}

// Header-level damage, each with the error it must produce.
TEST_F(GgufTest, MalformedHeaders) {
  struct Case {
    std::string name;
    std::vector<uint8_t> bytes;
    ErrorCode code;
    std::string message;
  };
  std::vector<Case> cases;
  auto one_tensor = [](std::vector<uint64_t> shape, uint32_t type, size_t bytes) {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_tensor("t", std::move(shape), type, std::vector<uint8_t>(bytes, 0));
    return w;
  };
  const GgufWriter base = one_tensor({32}, 0, 128);

  std::vector<uint8_t> bad_magic = base.serialize();
  bad_magic[0] = 'X';
  cases.push_back({"bad magic", bad_magic, ErrorCode::kCorrupt, "bad magic"});
  cases.push_back({"version 1", base.serialize({.version = 1}), ErrorCode::kUnsupported, "version 1"});
  cases.push_back({"version 4", base.serialize({.version = 4}), ErrorCode::kUnsupported, "version 4"});
  cases.push_back({"kv count", base.serialize({.kv_count = 1ull << 60}), ErrorCode::kCorrupt, "metadata count"});
  cases.push_back({"tensor count", base.serialize({.tensor_count = 1ull << 60}), ErrorCode::kCorrupt, "tensor count"});
  cases.push_back({"extra tensor", base.serialize({.tensor_count = 2}), ErrorCode::kCorrupt, "tensor ''"});
  cases.push_back({"bad type", one_tensor({32}, 99, 128).serialize(), ErrorCode::kUnsupported, "'t' has unsupported ggml type 99"});
  cases.push_back({"q2_k", one_tensor({256}, 10, 84).serialize(), ErrorCode::kUnsupported, "ggml type 10"});
  cases.push_back({"rank 5", one_tensor({2, 2, 2, 2, 2}, 0, 128).serialize(), ErrorCode::kCorrupt, "rank 5"});
  cases.push_back({"rank 0", one_tensor({}, 0, 64).serialize(), ErrorCode::kCorrupt, "rank 0"});
  cases.push_back({"zero dim", one_tensor({32, 0}, 0, 4).serialize(), ErrorCode::kCorrupt, "invalid dimension 0"});
  cases.push_back({"huge dims", one_tensor({1ull << 40, 1ull << 40}, 0, 4).serialize(), ErrorCode::kCorrupt, "invalid dimension"});
  cases.push_back({"partial block", one_tensor({48}, 8, 68).serialize(), ErrorCode::kCorrupt, "block size 32"});
  cases.push_back({"data past end", one_tensor({64}, 0, 128).serialize(), ErrorCode::kCorrupt, "past the end"});
  cases.push_back({"too large", one_tensor({1ull << 40}, 0, 128).serialize(), ErrorCode::kCorrupt, "larger than the file"});

  GgufWriter misaligned;  // second tensor at offset 16, but the file claims the default 32
  misaligned.add_tensor("a", {4}, 0, std::vector<uint8_t>(16, 0));
  misaligned.add_tensor("b", {4}, 0, std::vector<uint8_t>(16, 0));
  cases.push_back({"misaligned", misaligned.serialize({.alignment = 16}), ErrorCode::kCorrupt, "misaligned"});

  GgufWriter bad_alignment;
  bad_alignment.add_u32("general.alignment", 24);
  bad_alignment.add_tensor("a", {4}, 0, std::vector<uint8_t>(16, 0));
  cases.push_back({"alignment 24", bad_alignment.serialize({.alignment = 24}), ErrorCode::kCorrupt, "power of two"});

  GgufWriter duplicate;
  duplicate.add_u32("k", 1);
  duplicate.add_u32("k", 2);
  cases.push_back({"duplicate key", duplicate.serialize(), ErrorCode::kCorrupt, "duplicate metadata key 'k'"});

  GgufWriter duplicate_tensor;
  duplicate_tensor.add_tensor("a", {4}, 0, std::vector<uint8_t>(16, 0));
  duplicate_tensor.add_tensor("a", {4}, 0, std::vector<uint8_t>(16, 0));
  cases.push_back({"duplicate tensor", duplicate_tensor.serialize(), ErrorCode::kCorrupt, "duplicate tensor 'a'"});

  GgufWriter unknown_type;
  unknown_type.add_raw("k", 13, {0, 0, 0, 0});
  cases.push_back({"unknown value type", unknown_type.serialize(), ErrorCode::kCorrupt, "unknown value type 13"});

  GgufWriter huge_string;
  huge_string.add_raw("k", 8, {0, 0, 0, 0, 0, 0, 0, 0x40});  // 2^62-byte string
  cases.push_back({"huge string", huge_string.serialize(), ErrorCode::kCorrupt, "truncated value of 'k'"});

  GgufWriter huge_array;
  huge_array.add_raw("k", 9, {4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10});  // 2^60 u32s
  cases.push_back({"huge array", huge_array.serialize(), ErrorCode::kCorrupt, "exceeds the file"});

  GgufWriter nested;
  nested.add_raw("k", 9, {9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0});
  cases.push_back({"nested array", nested.serialize(), ErrorCode::kUnsupported, "array of arrays"});

  std::vector<uint8_t> huge_key_bytes = GgufWriter().serialize({.kv_count = 1});
  const std::vector<uint8_t> huge_length = {0, 0, 0, 0, 0, 0, 0, 0x80};  // 2^63-byte key
  huge_key_bytes.insert(huge_key_bytes.begin() + 24, huge_length.begin(), huge_length.end());
  cases.push_back({"huge key", huge_key_bytes, ErrorCode::kCorrupt, "truncated metadata key"});

  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    write_file(path("bad.gguf"), c.bytes);
    expect_error([&] { GgufFile::open(path("bad.gguf")); }, c.code, c.message);
  }
}

// Well-formed files that are not a llama model we can run.
TEST_F(GgufTest, RejectsWrongModels) {
  auto expect_load_error = [&](const GgufWriter& w, ErrorCode code, const std::string& message) {
    write_file(path("m.gguf"), w.serialize());
    expect_error([&] { load_gguf(path("m.gguf")); }, code, message);
  };
  {
    GgufWriter w;
    w.add_string("general.architecture", "gpt2");
    expect_load_error(w, ErrorCode::kUnsupported, "architecture 'gpt2'");
  }
  {
    TinyLlama t = make_tiny_llama(true);
    t.writer.add_tensor("rope_freqs.weight", {8}, 0, std::vector<uint8_t>(32, 0));
    expect_load_error(t.writer, ErrorCode::kUnsupported, "rope frequency factors");
  }
  {
    TinyLlama t = make_tiny_llama(true);
    t.writer.add_u32("llama.rope.dimension_count", kHeadDim / 2);
    expect_load_error(t.writer, ErrorCode::kUnsupported, "llama.rope.dimension_count");
  }
  {
    TinyLlama partial;  // claims 2^31-1 layers but holds only the embedding
    GgufWriter& w = partial.writer;
    w.add_string("general.architecture", "llama");
    w.add_u32("llama.embedding_length", kDim);
    w.add_u32("llama.feed_forward_length", kHidden);
    w.add_u32("llama.block_count", 0x7fffffff);
    w.add_u32("llama.attention.head_count", kHeads);
    w.add_u32("llama.context_length", kCtx);
    std::mt19937 rng(1);
    partial.add("token_embd.weight", DType::F32, kVocab, kDim, rng);
    expect_load_error(w, ErrorCode::kNotFound, "missing tensor 'blk.0.attn_norm.weight'");
  }
  {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_u32("llama.embedding_length", kDim);
    expect_load_error(w, ErrorCode::kCorrupt, "missing metadata 'llama.feed_forward_length'");
  }
}

TEST_F(GgufTest, ShapeMismatchIsCorrupt) {
  TinyLlama t = make_tiny_llama(true);
  t.writer.add_u32("llama.vocab_size", kVocab + 1);
  write_file(path("m.gguf"), t.writer.serialize());
  expect_error([&] { load_gguf(path("m.gguf")); }, ErrorCode::kCorrupt,
               "'token_embd.weight' has shape [64, 40], config implies [64, 41]");

  TinyLlama gqa = make_tiny_llama(true, /*kv_heads_in_metadata=*/1);
  write_file(path("m.gguf"), gqa.writer.serialize());
  expect_error([&] { load_gguf(path("m.gguf")); }, ErrorCode::kCorrupt,
               "'blk.0.attn_k.weight' has shape [64, 32], config implies [64, 16]");
}

// Random byte damage in the header must only ever produce tidal::Error.
TEST_F(GgufTest, RandomHeaderDamageNeverCrashes) {
  TinyLlama t = make_tiny_llama(false);
  size_t header_bytes = 0;
  const std::vector<uint8_t> good = t.writer.serialize({}, &header_bytes);
  std::mt19937 rng(99);
  int loaded = 0;
  for (int i = 0; i < 400; ++i) {
    std::vector<uint8_t> bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) bytes[rng() % header_bytes] = static_cast<uint8_t>(rng());
    write_file(path("fuzz.gguf"), bytes);
    if (!error_from([&] { load_model(path("fuzz.gguf")); })) ++loaded;
  }
  // Most damage lands in names and values that loading does not check, so
  // both outcomes occur; what matters is that nothing else happened.
  EXPECT_GT(loaded, 0);
  EXPECT_LT(loaded, 400);
}

TEST(LoadModel, DispatchesByContent) {
  const Model m = load_model(kStories);
  EXPECT_EQ(m.config.n_layers, 5);
  expect_error([] { load_model(kData + "/missing.gguf"); }, ErrorCode::kNotFound, "missing.gguf");
  expect_error([] { load_model(kData + "/stories260K/golden.json"); }, ErrorCode::kInvalidArgument, "unknown model format");
}

TEST(LoadModel, SmolLM2Q4_1) {
  const std::string path = std::string(TIDAL_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not present";
  const Model m = load_model(path);
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.hidden_dim, 1536);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.rope_theta, 100000.0f);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(m.lm_head.data, m.token_embedding.data);
  EXPECT_EQ(m.token_embedding.type, DType::Q8_0);
  EXPECT_EQ(m.layers[0].wq.type, DType::Q4_1);
  EXPECT_EQ(m.layers[0].wk.rows, 3 * 64);
  EXPECT_EQ(m.layers[29].w_down.cols, 1536);
  EXPECT_EQ(m.final_norm.size(), 576u);
}

}  // namespace
}  // namespace tidal
