#include "parallel/shard.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/aligned_vector.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kv/kv_cache.h"

namespace tidal {

namespace {

class ShardBytes : public WeightStorage {
 public:
  ShardBytes(size_t n_bytes, size_t n_scales) : bytes(n_bytes), scales(n_scales) {}
  AlignedVector<uint8_t> bytes;
  AlignedVector<float> scales;  // integer formats only
};

// Rows [begin, end) of w, with their scales: a view, no copy.
Weight rows_of(const Weight& w, int64_t begin, int64_t end) {
  Weight v = w;
  v.rows = end - begin;
  v.data = w.row(begin);
  if (w.scales != nullptr) v.scales = w.row_scales(begin);
  return v;
}

// Columns [begin, end) of row r of an integer-format w, re-padded as
// quantize_matrix pads (code 128, 8 or 0, scale and offset 0 for groups past the end):
// padding multiplies zero activations, but a shard should hold the same
// bytes as a matrix quantized at its own width. The scales stay those of
// the full row, so every kept element decodes to the same value.
void copy_int_columns(const Weight& w, int64_t r, int64_t begin, int64_t end, uint8_t* dst, float* scales) {
  const int64_t n = end - begin, padded = dtype_padded_cols(w.type, n);
  const uint8_t* src = w.row(r);
  if (w.type == DType::I8) {
    std::memcpy(dst, src + begin, size_t(n));
    std::memset(dst + n, 128, size_t(padded - n));
    scales[0] = w.row_scales(r)[0];
    return;
  }
  const int64_t g = dtype_group_size(w.type);
  const int64_t kept = (n + g - 1) / g, total = padded / g;
  // The asymmetric formats hold a row's scales, then its offsets (core/dtype.h).
  const int64_t arrays = dtype_is_a16(w.type) ? 2 : 1, src_groups = dtype_scales_per_row(w.type, w.cols) / arrays;
  for (int64_t a = 0; a < arrays; ++a) {
    std::memcpy(scales + a * total, w.row_scales(r) + a * src_groups + begin / g, size_t(kept) * sizeof(float));
    std::fill(scales + a * total + kept, scales + (a + 1) * total, 0.0f);
  }
  const uint8_t pad = dtype_is_a16(w.type) ? 0 : (dtype_packs_nibbles(w.type) ? 8 : 128);  // the code of 0
  if (!dtype_packs_nibbles(w.type)) {
    std::memcpy(dst, src + begin, size_t(n));
    std::memset(dst + n, pad, size_t(padded - n));
    return;
  }
  std::memcpy(dst, src + begin / 2, size_t(n + 1) / 2);  // begin is even: a whole group
  if (n % 2 == 1) dst[n / 2] = static_cast<uint8_t>((dst[n / 2] & 0x0f) | (pad << 4));  // the next shard's element
  std::memset(dst + (n + 1) / 2, pad | (pad << 4), size_t(padded - n) / 2);
}

// Columns [begin, end) of every row of w, copied into storage owned by
// `model`. The block formats' bounds were checked to be whole blocks; an
// group-wise integer split must start on a group, since a group has one scale.
Weight columns_of(const Weight& w, int64_t begin, int64_t end, Model& model) {
  if (const int64_t g = dtype_group_size(w.type); g > 0 && begin % g != 0) {
    throw Error(ErrorCode::kUnsupported, "cannot split " + std::string(dtype_name(w.type)) + " columns at " +
                                             std::to_string(begin) + ": a tensor-parallel split must start on a group of " +
                                             std::to_string(g) + " columns (choose another --tp or variant)");
  }
  Weight v = w;
  v.cols = end - begin;
  const size_t row_bytes = v.row_bytes();
  const int64_t scales_per_row = dtype_scales_per_row(w.type, v.cols);
  auto storage = std::make_unique<ShardBytes>(row_bytes * size_t(w.rows), size_t(w.rows * scales_per_row));
  for (int64_t r = 0; r < w.rows; ++r) {
    uint8_t* dst = storage->bytes.data() + size_t(r) * row_bytes;
    if (dtype_is_int(w.type)) {
      copy_int_columns(w, r, begin, end, dst, storage->scales.data() + r * scales_per_row);
    } else {
      std::memcpy(dst, w.row(r) + dtype_row_bytes(w.type, begin), row_bytes);
    }
  }
  v.data = storage->bytes.data();
  v.scales = storage->scales.empty() ? nullptr : storage->scales.data();
  model.storage.push_back(std::move(storage));
  return v;
}

int64_t range_begin(int64_t n, int index, int count) {
  int64_t begin, end;
  split_range(n, index, count, &begin, &end);
  return begin;
}

}  // namespace

ShardLayout shard_layout(const ModelConfig& c, const ParallelConfig& p, int rank) {
  ShardLayout s;
  s.tp_size = p.tp;
  s.tp_rank = rank % p.tp;
  s.num_stages = p.pp;
  s.stage = rank / p.tp;
  // Earlier stages take the extra layer: the last one also runs the LM head.
  s.layer_begin = int(range_begin(c.n_layers, s.stage, p.pp));
  s.layer_end = s.stage + 1 < p.pp ? int(range_begin(c.n_layers, s.stage + 1, p.pp)) : c.n_layers;
  for (int t = 0; t < p.tp; ++t) s.vocab_offsets.push_back(int(range_begin(c.vocab_size, t, p.tp)));
  s.vocab_offsets.push_back(c.vocab_size);
  return s;
}

Model shard_model(const Model& full, const ShardLayout& s) {
  const ModelConfig& c = full.config;
  Model m;
  m.config = c;
  m.config.n_layers = s.layer_end - s.layer_begin;
  m.config.n_heads = c.n_heads / s.tp_size;
  m.config.n_kv_heads = c.n_kv_heads / s.tp_size;
  m.config.hidden_dim = c.hidden_dim / s.tp_size;
  const int64_t hd = c.head_dim;
  const int64_t q0 = int64_t(s.tp_rank) * m.config.n_heads * hd, q1 = q0 + int64_t(m.config.n_heads) * hd;
  const int64_t kv0 = int64_t(s.tp_rank) * m.config.n_kv_heads * hd, kv1 = kv0 + int64_t(m.config.n_kv_heads) * hd;
  const int64_t f0 = int64_t(s.tp_rank) * m.config.hidden_dim, f1 = f0 + m.config.hidden_dim;

  for (int l = s.layer_begin; l < s.layer_end; ++l) {
    const LayerWeights& w = full.layers[size_t(l)];
    LayerWeights& out = m.layers.emplace_back();
    out.attn_norm = w.attn_norm;
    out.ffn_norm = w.ffn_norm;
    out.wq = rows_of(w.wq, q0, q1);
    out.wk = rows_of(w.wk, kv0, kv1);
    out.wv = rows_of(w.wv, kv0, kv1);
    out.w_gate = rows_of(w.w_gate, f0, f1);
    out.w_up = rows_of(w.w_up, f0, f1);
    out.wo = s.tp_size == 1 ? w.wo : columns_of(w.wo, q0, q1, m);
    out.w_down = s.tp_size == 1 ? w.w_down : columns_of(w.w_down, f0, f1, m);
  }
  if (s.first_stage()) m.token_embedding = rows_of(full.token_embedding, s.vocab_begin(), s.vocab_end());
  if (s.last_stage()) {
    m.lm_head = rows_of(full.lm_head, s.vocab_begin(), s.vocab_end());
    m.final_norm = full.final_norm;
  }
  return m;
}

size_t max_kv_bytes_per_token(const ModelConfig& c, const ParallelConfig& p, DType kv_dtype) {
  int most_layers = 0;
  for (int stage = 0; stage < p.pp; ++stage) {
    const ShardLayout s = shard_layout(c, p, stage * p.tp);
    most_layers = std::max(most_layers, s.layer_end - s.layer_begin);
  }
  return KvCacheShape{.n_layers = most_layers, .n_kv_heads = c.n_kv_heads / p.tp, .head_dim = c.head_dim,
                      .dtype = kv_dtype}
      .bytes_per_token();
}

TensorParallel tensor_parallel(const ShardLayout& s, Communicator* tp_group) {
  TensorParallel tp;
  tp.comm = s.tp_size > 1 ? tp_group : nullptr;
  tp.vocab_offsets = s.vocab_offsets;
  return tp;
}

}  // namespace tidal
