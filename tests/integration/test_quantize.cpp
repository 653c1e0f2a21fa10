// Variant files: a model derived and written by write_model_gguf (what
// `tidal quantize` does) loads back with the very same weights, so it
// generates the same greedy tokens as the variant derived in memory; damaged
// integer-variant files are rejected with clear errors; and the CLI.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/error.h"
#include "model/gguf_model_writer.h"
#include "model/gguf_writer.h"
#include "model/variant.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

namespace fs = std::filesystem;

class VariantFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tidal_quantize_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

const std::string kStoriesBin = data_path("stories260K/stories260K.bin");
const std::string kStoriesTok = data_path("stories260K/tok512.model");

Model derive(const Model& base, const std::string& variant) { return derive_variant(base, *parse_variant(variant)); }

// Derives `variant` from `base` and writes it as quantize does.
Model write_variant(const Model& base, const GgufFile* source, const std::string& variant, const std::string& out) {
  Model derived = derive(base, variant);
  const std::string storage = describe_storage(base);
  write_model_gguf(derived, source, {variant, "base (" + storage + ")", derivation_text(*parse_variant(variant), storage)},
                   out);
  return derived;
}

void expect_same_matrix(const Weight& a, const Weight& b, const std::string& name) {
  SCOPED_TRACE(name);
  ASSERT_EQ(a.type, b.type);
  ASSERT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.cols, b.cols);
  EXPECT_EQ(std::memcmp(a.data, b.data, a.bytes()), 0);
  ASSERT_EQ(a.scales == nullptr, b.scales == nullptr);
  if (a.scales != nullptr) {
    EXPECT_EQ(std::memcmp(a.scales, b.scales, a.scale_bytes()), 0);
  }
}

// Same hyper-parameters and bit-identical weights (codes and scales included).
void expect_same_model(const Model& a, const Model& b) {
  const ModelConfig &ca = a.config, &cb = b.config;
  EXPECT_EQ(ca.name, cb.name);
  EXPECT_EQ(ca.dim, cb.dim);
  EXPECT_EQ(ca.hidden_dim, cb.hidden_dim);
  EXPECT_EQ(ca.n_layers, cb.n_layers);
  EXPECT_EQ(ca.n_heads, cb.n_heads);
  EXPECT_EQ(ca.n_kv_heads, cb.n_kv_heads);
  EXPECT_EQ(ca.head_dim, cb.head_dim);
  EXPECT_EQ(ca.vocab_size, cb.vocab_size);
  EXPECT_EQ(ca.max_seq_len, cb.max_seq_len);
  EXPECT_EQ(ca.rope_theta, cb.rope_theta);
  EXPECT_EQ(ca.rms_eps, cb.rms_eps);
  EXPECT_EQ(ca.tied_embeddings, cb.tied_embeddings);
  EXPECT_EQ(ca.ffn_hadamard_block, cb.ffn_hadamard_block);
  EXPECT_EQ(a.lm_head.data == a.token_embedding.data, b.lm_head.data == b.token_embedding.data);
  expect_same_matrix(a.token_embedding, b.token_embedding, "token_embd");
  expect_same_matrix(a.lm_head, b.lm_head, "output");
  EXPECT_EQ(a.final_norm, b.final_norm);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerWeights &la = a.layers[l], &lb = b.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    EXPECT_EQ(la.attn_norm, lb.attn_norm) << p;
    EXPECT_EQ(la.ffn_norm, lb.ffn_norm) << p;
    expect_same_matrix(la.wq, lb.wq, p + "attn_q");
    expect_same_matrix(la.wk, lb.wk, p + "attn_k");
    expect_same_matrix(la.wv, lb.wv, p + "attn_v");
    expect_same_matrix(la.wo, lb.wo, p + "attn_output");
    expect_same_matrix(la.w_gate, lb.w_gate, p + "ffn_gate");
    expect_same_matrix(la.w_up, lb.w_up, p + "ffn_up");
    expect_same_matrix(la.w_down, lb.w_down, p + "ffn_down");
  }
}

std::vector<int32_t> greedy(const Model& model, const Tokenizer& tokenizer, const std::string& prompt, int n) {
  ThreadPool pool(2);
  CpuBackend backend(pool);
  LLMEngine engine(model, tokenizer, backend, small_engine_config());
  const auto out = run_all(engine, {greedy_request("0", tokenizer.encode(prompt, tokenizer.add_bos_by_default()), n)});
  return out.at(0).tokens;
}

// ---------------------------------------------------------------------------
// Round trips

TEST_F(VariantFile, Stories260KF16FileGeneratesLikeInMemoryF16) {
  const Model base = load_model(kStoriesBin);
  const Model in_memory = write_variant(base, nullptr, "f16", path("stories-f16.gguf"));
  const Model loaded = load_model(path("stories-f16.gguf"));
  expect_same_model(in_memory, loaded);

  const auto tokenizer = load_tokenizer(kStoriesTok);
  const auto want = greedy(in_memory, *tokenizer, "Once upon a time", 48);
  EXPECT_EQ(greedy(loaded, *tokenizer, "Once upon a time", 48), want);

  const auto file = GgufFile::open(path("stories-f16.gguf"));
  EXPECT_EQ(file->get_int("general.file_type", -1), 1);
  EXPECT_EQ(file->get_string("tidal.variant"), "f16");
  EXPECT_EQ(file->get_string("tidal.variant.derivation"), "f16 (round to nearest even) from f32");
  EXPECT_EQ(file->find_tensor("output.weight"), nullptr) << "stories260K ties its LM head";
  EXPECT_FALSE(file->has("tokenizer.ggml.tokens")) << "a llama2.c model's tokenizer stays outside the file";
}

TEST_F(VariantFile, SmolLM2F16FileKeepsMetadataAndGeneratesLikeInMemoryF16) {
  if (!fs::exists(smollm2_path())) GTEST_SKIP() << smollm2_path() << " not present (tools/setup_model.sh installs it)";
  const auto source = GgufFile::open(smollm2_path());
  const Model base = load_model(smollm2_path());
  const Model in_memory = write_variant(base, source.get(), "f16", path("smol-f16.gguf"));
  const Model loaded = load_model(path("smol-f16.gguf"));
  expect_same_model(in_memory, loaded);

  const auto file = GgufFile::open(path("smol-f16.gguf"));
  for (const GgufKey& key : source->keys()) {
    SCOPED_TRACE(key.name);
    if (key.name == "general.file_type" || key.name == "general.quantization_version") continue;
    const auto it = std::find_if(file->keys().begin(), file->keys().end(),
                                 [&](const GgufKey& k) { return k.name == key.name; });
    ASSERT_NE(it, file->keys().end());
    EXPECT_EQ(it->type, key.type);
    EXPECT_EQ(it->element, key.element);
    EXPECT_EQ(file->metadata().at(key.name), source->metadata().at(key.name));
  }
  EXPECT_EQ(file->get_int("general.file_type", -1), 1) << "llama.cpp's MOSTLY_F16";
  EXPECT_FALSE(file->has("general.quantization_version"));

  // The written file carries its own tokenizer.
  const auto source_tokenizer = load_tokenizer(smollm2_path());
  const auto file_tokenizer = load_tokenizer(path("smol-f16.gguf"));
  const std::string prompt = "The capital of France is";
  ASSERT_EQ(file_tokenizer->encode(prompt, false), source_tokenizer->encode(prompt, false));
  const auto want = greedy(in_memory, *source_tokenizer, prompt, 24);
  EXPECT_EQ(greedy(loaded, *file_tokenizer, prompt, 24), want);
}

TEST_F(VariantFile, IntegerVariantsRoundTripBitForBit) {
  const Model base = load_model(kStoriesBin);
  const auto tokenizer = load_tokenizer(kStoriesTok);
  for (const char* variant :
       {"int8", "int8-g32", "int4-g32", "int4-g64", "int4-g128", "w8a16-g32", "w4a16-g32", "w4a16-g128"}) {
    SCOPED_TRACE(variant);
    const std::string out = path(std::string("stories-") + variant + ".gguf");
    const Model in_memory = write_variant(base, nullptr, variant, out);
    const Model loaded = load_model(out);
    expect_same_model(in_memory, loaded);

    const auto file = GgufFile::open(out);
    EXPECT_EQ(file->get_string("tidal.quant.type"), variant);
    // The W4A16 variants keep their vocabulary matrices at 8 bits, and say so.
    const bool w4a16 = std::string(variant).starts_with("w4a16");
    EXPECT_EQ(file->has("tidal.quant.vocab_type"), w4a16);
    if (w4a16) {
      EXPECT_EQ(file->get_string("tidal.quant.vocab_type"), "w8a16-g32");
    }
    EXPECT_EQ(loaded.token_embedding.type, w4a16 ? DType::W8A16_G32 : loaded.layers[0].wq.type);
    EXPECT_EQ(file->get_int("tidal.quant.row_align", 0), kIntRowAlign);
    EXPECT_FALSE(file->has("general.file_type")) << "no llama.cpp file type describes tidal's integer formats";
    const GgufTensorInfo* codes = file->find_tensor("blk.0.ffn_down.weight");
    ASSERT_NE(codes, nullptr);
    EXPECT_EQ(codes->type, DType::I8);
    EXPECT_EQ(codes->shape[0], int64_t(loaded.layers[0].w_down.row_bytes())) << "rows stored padded";

    EXPECT_EQ(greedy(loaded, *tokenizer, "Once upon a time", 32), greedy(in_memory, *tokenizer, "Once upon a time", 32));
  }
}

// A rotated variant's file carries its untied LM head and its FFN rotation,
// without which w_down would meet unrotated activations.
TEST_F(VariantFile, RotatedInt8RoundTripsWithItsRotation) {
  const Model base = load_model(kStoriesBin);
  const auto tokenizer = load_tokenizer(kStoriesTok);
  const Model in_memory = write_variant(base, nullptr, "int8-rot", path("stories-int8-rot.gguf"));
  const Model loaded = load_model(path("stories-int8-rot.gguf"));
  expect_same_model(in_memory, loaded);
  EXPECT_EQ(loaded.config.ffn_hadamard_block, 4);
  EXPECT_FALSE(loaded.config.tied_embeddings);
  const auto file = GgufFile::open(path("stories-int8-rot.gguf"));
  EXPECT_EQ(file->get_string("tidal.variant"), "int8-rot");
  EXPECT_EQ(file->get_string("tidal.quant.type"), "int8");
  EXPECT_EQ(file->get_int("tidal.ffn_hadamard_block", 0), 4);
  EXPECT_NE(file->find_tensor("output.weight"), nullptr);
  EXPECT_EQ(greedy(loaded, *tokenizer, "Once upon a time", 32), greedy(in_memory, *tokenizer, "Once upon a time", 32));
}

TEST_F(VariantFile, SmolLM2Int4FileRoundTripsAndGenerates) {
  if (!fs::exists(smollm2_path())) GTEST_SKIP() << smollm2_path() << " not present (tools/setup_model.sh installs it)";
  const auto source = GgufFile::open(smollm2_path());
  const Model base = load_model(smollm2_path());
  const Model in_memory = write_variant(base, source.get(), "int4-g128", path("smol-int4.gguf"));
  const Model loaded = load_model(path("smol-int4.gguf"));
  expect_same_model(in_memory, loaded);
  const auto tokenizer = load_tokenizer(path("smol-int4.gguf"));
  EXPECT_EQ(greedy(loaded, *tokenizer, "The capital of France is", 12),
            greedy(in_memory, *tokenizer, "The capital of France is", 12));
}

TEST_F(VariantFile, IntegerFileDequantizedAtLoadMatchesDerivingF32) {
  const Model base = load_model(kStoriesBin);
  const Model int8 = write_variant(base, nullptr, "int8", path("int8.gguf"));
  const Model f32 = load_model(path("int8.gguf"), LoadOptions{.dequantize_to_f32 = true});
  expect_same_model(derive(int8, "f32"), f32);
}

// ---------------------------------------------------------------------------
// Damaged integer-variant files

// Writes `from`'s metadata (after `edit_metadata`) and its tensors through
// `add`, which may change, drop or reorder them, to `to`.
void rewrite(const std::string& from, const std::string& to, const std::function<void(GgufWriter&)>& edit_metadata,
             const std::function<void(GgufWriter&, const GgufTensorInfo&)>& add) {
  const auto file = GgufFile::open(from);
  GgufWriter w;
  w.copy_metadata(*file);
  edit_metadata(w);
  for (const GgufTensorInfo& t : file->tensors()) add(w, t);
  w.write(to);
}

void copy_tensor(GgufWriter& w, const GgufTensorInfo& t) { w.add_tensor(t.name, t.shape, t.type, t.data, t.bytes); }
void keep_metadata(GgufWriter&) {}

template <typename F>
void expect_load_error(F&& load, ErrorCode code, const std::vector<std::string>& message_parts) {
  try {
    load();
    ADD_FAILURE() << "loaded a damaged file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& part : message_parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what() << "\nmissing: " << part;
    }
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
}

TEST_F(VariantFile, TruncatedScaleTensorIsRejected) {
  write_variant(load_model(kStoriesBin), nullptr, "int8", path("int8.gguf"));
  const std::string scale = "blk.0.attn_q.weight.scale";
  {
    // The scale tensor moved to the end of the file, which is then cut short
    // inside it.
    const auto original = GgufFile::open(path("int8.gguf"));
    const GgufTensorInfo& moved = *original->find_tensor(scale);
    rewrite(path("int8.gguf"), path("truncated.gguf"), keep_metadata, [&](GgufWriter& w, const GgufTensorInfo& t) {
      if (t.name != scale) copy_tensor(w, t);
      if (t.name == original->tensors().back().name) copy_tensor(w, moved);
    });
  }
  fs::resize_file(path("truncated.gguf"), fs::file_size(path("truncated.gguf")) - 4);
  expect_load_error([&] { load_model(path("truncated.gguf")); }, ErrorCode::kCorrupt, {scale, "past the end"});

  // A scale tensor one row short, and none at all.
  rewrite(path("int8.gguf"), path("short.gguf"), keep_metadata, [&](GgufWriter& w, const GgufTensorInfo& t) {
    if (t.name != scale) return copy_tensor(w, t);
    w.add_tensor(t.name, {t.shape[0], t.shape[1] - 1}, t.type, t.data, t.bytes - sizeof(float) * size_t(t.shape[0]));
  });
  expect_load_error([&] { load_model(path("short.gguf")); }, ErrorCode::kCorrupt, {scale, "has shape [1, 63]"});
  rewrite(path("int8.gguf"), path("missing.gguf"), keep_metadata, [&](GgufWriter& w, const GgufTensorInfo& t) {
    if (t.name != scale) copy_tensor(w, t);
  });
  expect_load_error([&] { load_model(path("missing.gguf")); }, ErrorCode::kCorrupt,
                    {"blk.0.attn_q.weight", "has no scale tensor"});
}

TEST_F(VariantFile, IntegerMetadataMustDescribeTheTensors) {
  write_variant(load_model(kStoriesBin), nullptr, "int4-g64", path("int4.gguf"));
  auto with_metadata = [&](const std::function<void(GgufWriter&)>& edit) {
    rewrite(path("int4.gguf"), path("edited.gguf"), edit, copy_tensor);
    return path("edited.gguf");
  };
  expect_load_error([&] { load_model(with_metadata([](GgufWriter& w) { w.set_string("tidal.quant.type", "int3"); })); },
                    ErrorCode::kUnsupported, {"tidal.quant.type 'int3'"});
  expect_load_error([&] { load_model(with_metadata([](GgufWriter& w) { w.set_string("tidal.quant.type", "f16"); })); },
                    ErrorCode::kUnsupported, {"tidal.quant.type 'f16'"});
  expect_load_error([&] { load_model(with_metadata([](GgufWriter& w) { w.set_u32("tidal.quant.row_align", 32); })); },
                    ErrorCode::kUnsupported, {"tidal.quant.row_align is 32"});
  // int4-g64 rows of 64 columns take 32 bytes; read as int8 they would need 64.
  expect_load_error([&] { load_model(with_metadata([](GgufWriter& w) { w.set_string("tidal.quant.type", "int8"); })); },
                    ErrorCode::kCorrupt, {"token_embd.weight", "shape [32, 512]"});
  // Without the key, I8 tensors mean nothing to the loader.
  expect_load_error([&] { load_model(with_metadata([](GgufWriter& w) { w.remove("tidal.quant.type"); })); },
                    ErrorCode::kUnsupported, {"token_embd.weight", "ggml type I8"});
  // The vocabulary matrices' own format is checked the same way, and only
  // means something beside the layers' format.
  expect_load_error(
      [&] { load_model(with_metadata([](GgufWriter& w) { w.set_string("tidal.quant.vocab_type", "int3"); })); },
      ErrorCode::kUnsupported, {"tidal.quant.vocab_type 'int3'"});
  expect_load_error(
      [&] { load_model(with_metadata([](GgufWriter& w) { w.set_string("tidal.quant.vocab_type", "w8a16-g32"); })); },
      ErrorCode::kCorrupt, {"token_embd.weight", "shape [32, 512]"});
  expect_load_error([&] {
    load_model(with_metadata([](GgufWriter& w) {
      w.remove("tidal.quant.type");
      w.set_string("tidal.quant.vocab_type", "w8a16-g32");
    }));
  }, ErrorCode::kCorrupt, {"tidal.quant.vocab_type without tidal.quant.type"});
}

// A rotation block the FFN width (172) does not split into, or that fwht
// cannot transform, would rotate the activation into garbage.
TEST_F(VariantFile, FfnHadamardBlockMustSplitTheFfnWidth) {
  write_variant(load_model(kStoriesBin), nullptr, "int8-rot", path("rot.gguf"));
  auto with_block = [&](uint32_t block) {
    rewrite(path("rot.gguf"), path("edited.gguf"), [&](GgufWriter& w) { w.set_u32("tidal.ffn_hadamard_block", block); },
            copy_tensor);
    return path("edited.gguf");
  };
  expect_load_error([&] { load_model(with_block(3)); }, ErrorCode::kCorrupt, {"FFN Hadamard block 3", "172"});
  expect_load_error([&] { load_model(with_block(8)); }, ErrorCode::kCorrupt, {"FFN Hadamard block 8", "172"});
  EXPECT_EQ(load_model(with_block(2)).config.ffn_hadamard_block, 2);
}

// ---------------------------------------------------------------------------
// The CLI

struct CliRun {
  int exit_code;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& file) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class VariantFileCli : public VariantFile {
 protected:
  CliRun tidal(const std::string& args) const {
    const std::string cmd = std::string(TIDAL_BIN_DIR) + "/tidal " + args + " >" + path("stdout") + " 2>" + path("stderr");
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(path("stdout")), slurp(path("stderr"))};
  }
};

void expect_usage_error(const CliRun& r, const std::string& message_part) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  EXPECT_NE(r.err.find(message_part), std::string::npos) << r.err;
}

TEST_F(VariantFileCli, WritesAVariantThatLoadsAndSaysWhatItDid) {
  const CliRun r = tidal("quantize --model " + kStoriesBin + " --tokenizer " + kStoriesTok + " --to f16 --out " +
                      path("f16.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "one summary line: " << r.out;
  EXPECT_NE(r.out.find("f16 from f32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::to_string(model_weight_bytes(load_model(kStoriesBin)))), std::string::npos) << r.out;
  expect_same_model(derive(load_model(kStoriesBin), "f16"), load_model(path("f16.gguf")));

  // A variant of a variant describes only itself.
  ASSERT_EQ(tidal("quantize -m " + kStoriesBin + " --to int8 -o " + path("int8.gguf")).exit_code, 0);
  const CliRun again = tidal("quantize -m " + path("int8.gguf") + " --to bf16 -o " + path("bf16.gguf"));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto file = GgufFile::open(path("bf16.gguf"));
  EXPECT_FALSE(file->has("tidal.quant.type"));
  EXPECT_EQ(file->get_int("general.file_type", -1), 32) << "llama.cpp's MOSTLY_BF16";
  EXPECT_EQ(file->get_string("tidal.variant.base"), "int8.gguf (int8)");

  const CliRun generated = tidal("generate -m " + path("bf16.gguf") + " --tokenizer " + kStoriesTok +
                              " -p 'Once upon a time' -n 8 --temperature 0 -t 2");
  EXPECT_EQ(generated.exit_code, 0) << generated.err;
}

TEST_F(VariantFileCli, MistakesAreOneLineErrorsWithExitCode2) {
  const std::string model = " --model " + kStoriesBin;
  expect_usage_error(tidal("quantize" + model + " --to q4_0 --out " + path("x.gguf")), "unknown variant 'q4_0'");
  expect_usage_error(tidal("quantize" + model + " --to f16,int8 --out " + path("x.gguf")), "one variant");
  expect_usage_error(tidal("quantize" + model + " --to f16"), "--out");
  expect_usage_error(tidal("quantize --model " + path("none.bin") + " --to f16 --out " + path("x.gguf")), "none.bin");
  expect_usage_error(tidal("quantize" + model + " --to f16 --out " + path("no_dir/x.gguf")), "cannot create");
  if (fs::exists(smollm2_path())) {
    expect_usage_error(tidal("quantize" + model + " --tokenizer " + smollm2_path() + " --to f16 --out " + path("x.gguf")),
                       "tokens but the model only 512");
  }
  EXPECT_FALSE(fs::exists(path("x.gguf")));

  fs::copy_file(kStoriesBin, path("model.bin"));
  const auto size = fs::file_size(path("model.bin"));
  expect_usage_error(tidal("quantize --model " + path("model.bin") + " --to f16 --out " + path("model.bin")),
                     "is the input model");
  expect_usage_error(tidal("quantize --model " + path("model.bin") + " --to f16 --out " + path(".") + "/model.bin"),
                     "is the input model");
  EXPECT_EQ(fs::file_size(path("model.bin")), size);
}

}  // namespace
}  // namespace tidal::test
