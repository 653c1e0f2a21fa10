// Llama-architecture models from GGUF. Matrices are viewed in place in the
// mapping (in the file's type); norm vectors are copied out as F32.
//
// Q and K are used as stored: llama.cpp's converter already permuted them so
// that RoPE rotates adjacent pairs (2i, 2i+1), which is what our rope op does.
//
// Files of tidal's integer variants (tidal.quant.type, see gguf.h) are read
// natively too: each matrix's codes and scales are viewed in the mapping.
#include <filesystem>
#include <limits>

#include "core/dequantize.h"
#include "core/error.h"
#include "model/gguf.h"
#include "model/loader.h"
#include "model/variant.h"

namespace tidal {
namespace {

struct GgufStorage final : WeightStorage {
  explicit GgufStorage(std::unique_ptr<GgufFile> f) : file(std::move(f)) {}
  std::unique_ptr<GgufFile> file;
};

class LlamaReader {
 public:
  LlamaReader(const GgufFile& file, const std::string& path)
      : file_(file), path_(path), int_format_(int_format(kQuantTypeKey)),
        vocab_int_format_(file.has(kQuantVocabTypeKey) ? int_format(kQuantVocabTypeKey) : int_format_) {}

  bool is_int_variant() const { return int_format_.has_value(); }

  [[noreturn]] void fail(ErrorCode code, const std::string& what) const { throw Error(code, path_ + ": " + what); }

  // A required positive integer that must fit the config's int fields.
  int required_int(const std::string& key) const {
    if (!file_.has(key)) fail(ErrorCode::kCorrupt, "missing metadata '" + key + "'");
    return checked_int(key, file_.get_int(key, 0));
  }
  int optional_int(const std::string& key, int fallback) const {
    return checked_int(key, file_.get_int(key, fallback));
  }

  const GgufTensorInfo& tensor(const std::string& name) const {
    const GgufTensorInfo* t = file_.find_tensor(name);
    if (t == nullptr) fail(ErrorCode::kNotFound, "missing tensor '" + name + "'");
    return *t;
  }

  // ggml shape [ne0, ne1] is ne1 rows of ne0 contiguous elements. The
  // vocabulary matrices (token embedding, LM head) may have their own
  // integer format.
  Weight matrix(const std::string& name, int64_t rows, int64_t cols, bool vocabulary = false) const {
    const GgufTensorInfo& t = tensor(name);
    const std::optional<DType>& format = vocabulary ? vocab_int_format_ : int_format_;
    if (format) return int_matrix(t, *format, rows, cols);
    reject_raw_bytes(t);
    check_shape(t, cols, rows);
    return Weight{t.type, rows, cols, t.data};
  }

  std::vector<float> norm(const std::string& name, int64_t n) const {
    const GgufTensorInfo& t = tensor(name);
    reject_raw_bytes(t);
    check_shape(t, n, 1);
    std::vector<float> out(static_cast<size_t>(n));
    dequantize_row(t.type, t.data, out.data(), n);
    return out;
  }

 private:
  int checked_int(const std::string& key, int64_t v) const {
    if (v <= 0 || v > std::numeric_limits<int32_t>::max()) {
      fail(ErrorCode::kCorrupt, "metadata '" + key + "' = " + std::to_string(v) + " is out of range");
    }
    return static_cast<int>(v);
  }

  // The integer format named by `key` (tidal.quant.type or .vocab_type);
  // nullopt for ordinary files.
  std::optional<DType> int_format(const char* key) const {
    if (!file_.has(key)) return std::nullopt;
    if (!file_.has(kQuantTypeKey)) fail(ErrorCode::kCorrupt, std::string(key) + " without " + kQuantTypeKey);
    const std::string name = file_.get_string(key);
    const std::optional<DType> type = int_dtype_named(name);
    if (!type) {
      std::string known;
      for (DType t : kIntDTypes) known += (known.empty() ? "" : ", ") + std::string(dtype_name(t));
      fail(ErrorCode::kUnsupported,
           std::string(key) + " '" + name + "' is not an integer format this build reads (" + known + ")");
    }
    const int64_t align = file_.get_int(kQuantRowAlignKey, 0);
    if (align != kIntRowAlign) {
      fail(ErrorCode::kUnsupported, std::string(kQuantRowAlignKey) + " is " + std::to_string(align) +
                                        " but this build pads integer rows to " + std::to_string(kIntRowAlign));
    }
    return type;
  }

  // Codes [row bytes, rows] as ggml I8 plus F32 scales [scales per row, rows].
  Weight int_matrix(const GgufTensorInfo& codes, DType type, int64_t rows, int64_t cols) const {
    const std::string format(dtype_name(type));
    if (codes.type != DType::I8) {
      fail(ErrorCode::kCorrupt, "tensor '" + codes.name + "' is " + std::string(dtype_name(codes.type)) +
                                    " but an " + format + " file stores every matrix as I8 codes");
    }
    check_shape(codes, static_cast<int64_t>(dtype_row_bytes(type, cols)), rows);
    const GgufTensorInfo* scales = file_.find_tensor(codes.name + kScaleSuffix);
    if (scales == nullptr) fail(ErrorCode::kCorrupt, format + " matrix '" + codes.name + "' has no scale tensor");
    if (scales->type != DType::F32) {
      fail(ErrorCode::kCorrupt, "scale tensor '" + scales->name + "' is " + std::string(dtype_name(scales->type)) +
                                    ", not f32");
    }
    check_shape(*scales, dtype_scales_per_row(type, cols), rows);
    return Weight{type, rows, cols, codes.data, reinterpret_cast<const float*>(scales->data)};
  }

  // ggml I8 tensors are bytes that only an integer variant gives a meaning.
  void reject_raw_bytes(const GgufTensorInfo& t) const {
    if (t.type == DType::I8) {
      fail(ErrorCode::kUnsupported, "tensor '" + t.name + "' has ggml type I8, which tidal reads only for the matrices "
                                    "of its integer variants (" + kQuantTypeKey + ")");
    }
  }

  void check_shape(const GgufTensorInfo& t, int64_t ne0, int64_t ne1) const {
    // Trailing dimensions of 1 are insignificant in ggml shapes.
    std::vector<int64_t> shape = t.shape;
    while (shape.size() > 2 && shape.back() == 1) shape.pop_back();
    if (shape.size() == 1) shape.push_back(1);
    if (shape[0] != ne0 || shape[1] != ne1 || shape.size() != 2) {
      std::string got;
      for (int64_t d : t.shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
      fail(ErrorCode::kCorrupt, "tensor '" + t.name + "' has shape [" + got + "], config implies [" +
                                    std::to_string(ne0) + ", " + std::to_string(ne1) + "]");
    }
  }

  const GgufFile& file_;
  const std::string& path_;
  std::optional<DType> int_format_;
  std::optional<DType> vocab_int_format_;
};

ModelConfig read_config(const GgufFile& file, const LlamaReader& r, const std::string& path) {
  ModelConfig c;
  c.name = file.get_string("general.name", std::filesystem::path(path).stem().string());
  c.dim = r.required_int("llama.embedding_length");
  c.hidden_dim = r.required_int("llama.feed_forward_length");
  c.n_layers = r.required_int("llama.block_count");
  c.n_heads = r.required_int("llama.attention.head_count");
  c.n_kv_heads = r.optional_int("llama.attention.head_count_kv", c.n_heads);
  c.head_dim = c.dim / c.n_heads;
  c.max_seq_len = r.required_int("llama.context_length");
  c.rope_theta = static_cast<float>(file.get_float("llama.rope.freq_base", 10000.0));
  c.rms_eps = static_cast<float>(file.get_float("llama.attention.layer_norm_rms_epsilon", 1e-5));
  if (file.has("llama.vocab_size")) {
    c.vocab_size = r.required_int("llama.vocab_size");
  } else {
    const std::vector<int64_t>& shape = r.tensor("token_embd.weight").shape;
    // 0 (rejected by validate_config) when the embedding is not a sane matrix.
    c.vocab_size = shape.size() >= 2 && shape[1] <= std::numeric_limits<int32_t>::max() ? static_cast<int>(shape[1]) : 0;
  }
  c.tied_embeddings = file.find_tensor("output.weight") == nullptr;
  if (file.has(kFfnHadamardBlockKey)) c.ffn_hadamard_block = r.required_int(kFfnHadamardBlockKey);
  validate_config(c, path);

  // Variants we would silently compute wrongly are refused instead.
  auto unsupported = [&](const std::string& what) { r.fail(ErrorCode::kUnsupported, what); };
  for (const char* key : {"llama.attention.key_length", "llama.attention.value_length", "llama.rope.dimension_count"}) {
    if (file.has(key) && file.get_int(key, 0) != c.head_dim) {
      unsupported(std::string(key) + " differs from head_dim " + std::to_string(c.head_dim));
    }
  }
  if (file.get_int("llama.expert_count", 0) > 0) unsupported("mixture-of-experts models are not supported");
  const std::string scaling = file.get_string("llama.rope.scaling.type", "none");
  if (scaling != "none") unsupported("rope scaling '" + scaling + "' is not supported");
  if (file.find_tensor("rope_freqs.weight") != nullptr) unsupported("rope frequency factors are not supported");
  return c;
}

}  // namespace

Model load_gguf(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<GgufFile> file = GgufFile::open(path);
  const std::string arch = file->get_string("general.architecture");
  if (arch != "llama") {
    throw Error(ErrorCode::kUnsupported, path + ": architecture '" + arch + "' is not supported (need llama)");
  }
  const LlamaReader r(*file, path);
  Model model;
  model.config = read_config(*file, r, path);
  const ModelConfig& c = model.config;
  const int64_t q_dim = static_cast<int64_t>(c.n_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;

  model.token_embedding = r.matrix("token_embd.weight", c.vocab_size, c.dim, true);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& layer = model.layers.emplace_back();
    layer.attn_norm = r.norm(p + "attn_norm.weight", c.dim);
    layer.wq = r.matrix(p + "attn_q.weight", q_dim, c.dim);
    layer.wk = r.matrix(p + "attn_k.weight", kv_dim, c.dim);
    layer.wv = r.matrix(p + "attn_v.weight", kv_dim, c.dim);
    layer.wo = r.matrix(p + "attn_output.weight", c.dim, q_dim);
    layer.ffn_norm = r.norm(p + "ffn_norm.weight", c.dim);
    layer.w_gate = r.matrix(p + "ffn_gate.weight", c.hidden_dim, c.dim);
    layer.w_up = r.matrix(p + "ffn_up.weight", c.hidden_dim, c.dim);
    layer.w_down = r.matrix(p + "ffn_down.weight", c.dim, c.hidden_dim);
  }
  model.final_norm = r.norm("output_norm.weight", c.dim);
  model.lm_head = c.tied_embeddings ? model.token_embedding : r.matrix("output.weight", c.vocab_size, c.dim, true);

  model.storage.push_back(std::make_unique<GgufStorage>(std::move(file)));
  if (options.dequantize_to_f32) {
    // convert_weights_to_f32 reads the block formats only; derive_variant
    // decodes every format and returns a model owning all its storage.
    if (r.is_int_variant()) return derive_variant(model, *parse_variant("f32"));
    convert_weights_to_f32(model);
  }
  align_float_weights(model);
  return model;
}

}  // namespace tidal
