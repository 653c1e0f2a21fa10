#include "parallel/shard.h"

#include <algorithm>
#include <cstring>

#include "core/thread_pool.h"

namespace tidal {

namespace {

class ShardBytes : public WeightStorage {
 public:
  explicit ShardBytes(size_t n) : bytes(n) {}
  std::vector<uint8_t> bytes;
};

// Rows [begin, end) of w: a view, no copy.
Weight rows_of(const Weight& w, int64_t begin, int64_t end) {
  Weight v = w;
  v.rows = end - begin;
  v.data = w.row(begin);
  return v;
}

// Columns [begin, end) of every row of w, copied into storage owned by
// `model` (the caller checked that the bounds are whole blocks).
Weight columns_of(const Weight& w, int64_t begin, int64_t end, Model& model) {
  const size_t offset = dtype_row_bytes(w.type, begin);
  const size_t row_bytes = dtype_row_bytes(w.type, end - begin);
  auto storage = std::make_unique<ShardBytes>(row_bytes * size_t(w.rows));
  for (int64_t r = 0; r < w.rows; ++r) {
    std::memcpy(storage->bytes.data() + size_t(r) * row_bytes, w.row(r) + offset, row_bytes);
  }
  Weight v = w;
  v.cols = end - begin;
  v.data = storage->bytes.data();
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

size_t max_kv_bytes_per_token(const ModelConfig& c, const ParallelConfig& p) {
  int most_layers = 0;
  for (int stage = 0; stage < p.pp; ++stage) {
    const ShardLayout s = shard_layout(c, p, stage * p.tp);
    most_layers = std::max(most_layers, s.layer_end - s.layer_begin);
  }
  return size_t(2) * size_t(most_layers) * size_t(c.n_kv_heads / p.tp) * size_t(c.head_dim) * sizeof(float);
}

TensorParallel tensor_parallel(const ShardLayout& s, Communicator* tp_group) {
  TensorParallel tp;
  tp.comm = s.tp_size > 1 ? tp_group : nullptr;
  tp.vocab_offsets = s.vocab_offsets;
  return tp;
}

}  // namespace tidal
