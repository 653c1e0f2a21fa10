// llama2.c checkpoints (Karpathy's legacy export): a 7 x int32 header, then
// every tensor as raw float32, grouped by kind across layers.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "model/loader.h"

namespace tidal {
namespace {

constexpr size_t kHeaderBytes = 7 * sizeof(int32_t);

struct MappedFile final : WeightStorage {
  void* addr = nullptr;
  size_t size = 0;
  ~MappedFile() override {
    if (addr != nullptr) ::munmap(addr, size);
  }
};

std::unique_ptr<MappedFile> map_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::kNotFound, path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::kInvalidArgument, path + ": not a regular file");
  }
  if (static_cast<size_t>(st.st_size) < kHeaderBytes) {
    ::close(fd);
    throw Error(ErrorCode::kCorrupt, path + ": truncated llama2.c header (" + std::to_string(st.st_size) + " bytes)");
  }
  auto file = std::make_unique<MappedFile>();
  file->size = static_cast<size_t>(st.st_size);
  void* addr = ::mmap(nullptr, file->size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (addr == MAP_FAILED) throw Error(ErrorCode::kResourceExhausted, path + ": mmap failed: " + std::strerror(map_errno));
  file->addr = addr;
  return file;
}

// Element counts can exceed 64 bits for a hostile header (layers x hidden x dim
// are each up to 2^31), so sizes are summed with overflow checks.
class SizeCounter {
 public:
  explicit SizeCounter(const std::string& path) : path_(path) {}
  // Adds a * b * c floats.
  void add(uint64_t a, uint64_t b = 1, uint64_t c = 1) {
    uint64_t n = 0;
    if (__builtin_mul_overflow(a, b, &n) || __builtin_mul_overflow(n, c, &n) ||
        __builtin_add_overflow(total_, n, &total_)) {
      fail();
    }
  }
  // Size of the whole file: header plus the counted floats.
  uint64_t file_bytes() const {
    if (total_ > (std::numeric_limits<uint64_t>::max() - kHeaderBytes) / sizeof(float)) fail();
    return kHeaderBytes + total_ * sizeof(float);
  }

 private:
  [[noreturn]] void fail() const {
    throw Error(ErrorCode::kCorrupt, path_ + ": llama2.c header implies an impossibly large file");
  }
  const std::string& path_;
  uint64_t total_ = 0;
};

}  // namespace

Model load_llama2c(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<MappedFile> file = map_file(path);
  const auto* base = static_cast<const uint8_t*>(file->addr);
  int32_t header[7];
  std::memcpy(header, base, kHeaderBytes);

  Model model;
  ModelConfig& c = model.config;
  c.name = std::filesystem::path(path).stem().string();
  c.dim = header[0];
  c.hidden_dim = header[1];
  c.n_layers = header[2];
  c.n_heads = header[3];
  c.n_kv_heads = header[4];
  // The sign of vocab_size is how the exporter flags a separate classifier.
  c.tied_embeddings = header[5] > 0;
  c.vocab_size = header[5] == std::numeric_limits<int32_t>::min() ? 0 : std::abs(header[5]);
  c.max_seq_len = header[6];
  c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  c.rope_theta = 10000.0f;
  c.rms_eps = 1e-5f;
  validate_config(c, path);

  const uint64_t dim = c.dim, hidden = c.hidden_dim, layers = c.n_layers, vocab = c.vocab_size;
  const uint64_t kv_dim = static_cast<uint64_t>(c.n_kv_heads) * c.head_dim;
  SizeCounter count(path);
  count.add(vocab, dim);                       // token embedding
  count.add(layers, dim);                      // rms_att
  count.add(layers, dim, dim);                 // wq
  count.add(layers, kv_dim, dim);              // wk
  count.add(layers, kv_dim, dim);              // wv
  count.add(layers, dim, dim);                 // wo
  count.add(layers, dim);                      // rms_ffn
  count.add(layers, hidden, dim);              // w1, w2, w3
  count.add(layers, hidden, dim);
  count.add(layers, hidden, dim);
  count.add(dim);                              // rms_final
  count.add(2, c.max_seq_len, c.head_dim / 2); // freq_cis real + imag (unused)
  if (!c.tied_embeddings) count.add(vocab, dim);
  const uint64_t expected = count.file_bytes();
  if (expected != file->size) {
    throw Error(ErrorCode::kCorrupt, path + ": header implies " + std::to_string(expected) + " bytes but the file has " +
                                         std::to_string(file->size));
  }

  // Walks the arrays in file order; the size check above keeps it in bounds.
  const uint8_t* cursor = base + kHeaderBytes;
  auto take = [&](uint64_t n_floats) {
    const uint8_t* p = cursor;
    cursor += n_floats * sizeof(float);
    return p;
  };
  auto matrices = [&](uint64_t rows, uint64_t cols) { return take(layers * rows * cols); };
  auto vec = [](const uint8_t* p, uint64_t n) {
    std::vector<float> v(n);
    std::memcpy(v.data(), p, n * sizeof(float));
    return v;
  };
  auto weight = [](const uint8_t* p, uint64_t rows, uint64_t cols) {
    return Weight{DType::F32, static_cast<int64_t>(rows), static_cast<int64_t>(cols), p};
  };

  model.token_embedding = weight(take(vocab * dim), vocab, dim);
  const uint8_t* rms_att = matrices(1, dim);
  const uint8_t* wq = matrices(dim, dim);
  const uint8_t* wk = matrices(kv_dim, dim);
  const uint8_t* wv = matrices(kv_dim, dim);
  const uint8_t* wo = matrices(dim, dim);
  const uint8_t* rms_ffn = matrices(1, dim);
  const uint8_t* w1 = matrices(hidden, dim);
  const uint8_t* w2 = matrices(dim, hidden);
  const uint8_t* w3 = matrices(hidden, dim);
  model.final_norm = vec(take(dim), dim);
  take(2 * static_cast<uint64_t>(c.max_seq_len) * (c.head_dim / 2));  // precomputed RoPE tables: recomputed instead
  model.lm_head = c.tied_embeddings ? model.token_embedding : weight(take(vocab * dim), vocab, dim);

  const uint64_t f = sizeof(float);
  for (uint64_t l = 0; l < layers; ++l) {
    LayerWeights& layer = model.layers.emplace_back();
    layer.attn_norm = vec(rms_att + l * dim * f, dim);
    layer.wq = weight(wq + l * dim * dim * f, dim, dim);
    layer.wk = weight(wk + l * kv_dim * dim * f, kv_dim, dim);
    layer.wv = weight(wv + l * kv_dim * dim * f, kv_dim, dim);
    layer.wo = weight(wo + l * dim * dim * f, dim, dim);
    layer.ffn_norm = vec(rms_ffn + l * dim * f, dim);
    layer.w_gate = weight(w1 + l * hidden * dim * f, hidden, dim);
    layer.w_down = weight(w2 + l * dim * hidden * f, dim, hidden);
    layer.w_up = weight(w3 + l * hidden * dim * f, hidden, dim);
  }
  model.storage.push_back(std::move(file));
  if (options.dequantize_to_f32) convert_weights_to_f32(model);  // a no-op today: the format is all F32
  align_float_weights(model);
  return model;
}

}  // namespace tidal
