#include "model/llama_forward.h"

#include <algorithm>
#include <cstring>

namespace tidal {

LlamaForward::LlamaForward(const Model& model, Backend& backend)
    : LlamaForward(model, backend, TensorParallel{nullptr, {0, model.config.vocab_size}}) {}

LlamaForward::LlamaForward(const Model& shard, Backend& backend, TensorParallel tp)
    : model_(shard), backend_(backend), tp_(std::move(tp)), vocab_size_(tp_.vocab_offsets.back()) {}

void LlamaForward::reserve(int n_tokens) {
  if (n_tokens <= capacity_) return;
  const ModelConfig& c = model_.config;
  const size_t n = size_t(n_tokens);
  x_.resize(n * c.dim);
  h_.resize(n * c.dim);
  q_.resize(n * c.n_heads * c.head_dim);
  k_.resize(n * c.n_kv_heads * c.head_dim);
  v_.resize(n * c.n_kv_heads * c.head_dim);
  attn_.resize(n * c.n_heads * c.head_dim);
  gate_.resize(n * c.hidden_dim);
  up_.resize(n * c.hidden_dim);
  last_.resize(n * c.dim);
  capacity_ = n_tokens;
}

float* LlamaForward::hidden(int n_tokens) {
  reserve(n_tokens);
  return x_.data();
}

void LlamaForward::all_reduce(float* x, int64_t n) {
  if (tp_.comm) tp_.comm->all_reduce_sum(x, size_t(n));
}

void LlamaForward::forward(KvCache& cache, const ForwardBatch& batch, float* logits) {
  embed(batch.tokens, batch.meta.n_tokens);
  run_layers(cache, batch.meta);
  head(batch.logits_rows, logits);
}

void LlamaForward::embed(const int32_t* tokens, int n) {
  const int dim = model_.config.dim;
  float* x = hidden(n);
  if (!tp_.comm) {
    backend_.embed(model_.token_embedding, tokens, n, x);
    return;
  }
  // Vocab parallel: each rank embeds the tokens in its rows, zeros elsewhere;
  // the all-reduce adds exact zeros, so every row equals the one-device row.
  const int begin = tp_.vocab_offsets[size_t(tp_.comm->rank())];
  const int end = tp_.vocab_offsets[size_t(tp_.comm->rank()) + 1];
  local_ids_.clear();
  local_rows_.clear();
  for (int t = 0; t < n; ++t) {
    if (tokens[t] >= begin && tokens[t] < end) {
      local_ids_.push_back(tokens[t] - begin);
      local_rows_.push_back(t);
    }
  }
  std::fill(x, x + size_t(n) * dim, 0.0f);
  if (!local_ids_.empty()) {
    backend_.embed(model_.token_embedding, local_ids_.data(), int(local_ids_.size()), h_.data());
    for (size_t i = 0; i < local_rows_.size(); ++i) {
      std::memcpy(x + size_t(local_rows_[i]) * dim, h_.data() + i * dim, sizeof(float) * dim);
    }
  }
  all_reduce(x, int64_t(n) * dim);
}

void LlamaForward::run_layers(KvCache& cache, const AttentionMeta& meta) {
  const ModelConfig& c = model_.config;
  const int n = meta.n_tokens;
  reserve(n);
  Backend& b = backend_;
  for (size_t l = 0; l < model_.layers.size(); ++l) {
    const LayerWeights& w = model_.layers[l];
    const int layer = int(l);
    b.rmsnorm(x_.data(), w.attn_norm.data(), n, c.dim, c.rms_eps, h_.data());
    b.matmul(w.wq, h_.data(), n, q_.data());
    b.matmul(w.wk, h_.data(), n, k_.data());
    b.matmul(w.wv, h_.data(), n, v_.data());
    b.rope(q_.data(), meta.positions, n, c.n_heads, c.head_dim, c.rope_theta);
    b.rope(k_.data(), meta.positions, n, c.n_kv_heads, c.head_dim, c.rope_theta);
    b.kv_write(cache, layer, k_.data(), v_.data(), meta);
    b.attention(cache, layer, q_.data(), meta, c.n_heads, attn_.data());
    b.matmul(w.wo, attn_.data(), n, h_.data());
    all_reduce(h_.data(), int64_t(n) * c.dim);
    b.add(x_.data(), h_.data(), int64_t(n) * c.dim);

    b.rmsnorm(x_.data(), w.ffn_norm.data(), n, c.dim, c.rms_eps, h_.data());
    b.matmul(w.w_gate, h_.data(), n, gate_.data());
    b.matmul(w.w_up, h_.data(), n, up_.data());
    b.silu_mul(gate_.data(), up_.data(), int64_t(n) * c.hidden_dim);
    if (c.ffn_hadamard_block > 0) b.hadamard(gate_.data(), n, c.hidden_dim, c.ffn_hadamard_block);
    b.matmul(w.w_down, gate_.data(), n, h_.data());
    all_reduce(h_.data(), int64_t(n) * c.dim);
    b.add(x_.data(), h_.data(), int64_t(n) * c.dim);
  }
}

void LlamaForward::head(const std::vector<int32_t>& rows, float* logits) {
  // Only the rows that sample pay for the final norm and the LM head.
  const ModelConfig& c = model_.config;
  const int m = int(rows.size());
  if (m == 0) return;
  for (int i = 0; i < m; ++i) {
    std::memcpy(last_.data() + size_t(i) * c.dim, x_.data() + size_t(rows[i]) * c.dim, sizeof(float) * c.dim);
  }
  backend_.rmsnorm(last_.data(), model_.final_norm.data(), m, c.dim, c.rms_eps, last_.data());
  if (!tp_.comm) {
    backend_.matmul(model_.lm_head, last_.data(), m, logits);
    return;
  }
  // Vocab parallel: every rank computes its slice of each row, padded to the
  // widest slice so that one all-gather collects them, then reassembles rows.
  const int ranks = tp_.comm->size();
  size_t width = 0;
  for (int t = 0; t < ranks; ++t) width = std::max(width, size_t(tp_.vocab_offsets[t + 1] - tp_.vocab_offsets[t]));
  const size_t mine = size_t(model_.lm_head.rows);
  part_.assign(size_t(m) * width, 0.0f);
  gathered_.resize(size_t(ranks) * m * width);
  // gathered_ holds this rank's [m][mine] result until the gather refills it.
  backend_.matmul(model_.lm_head, last_.data(), m, gathered_.data());
  for (int i = 0; i < m; ++i) std::memcpy(part_.data() + i * width, gathered_.data() + i * mine, sizeof(float) * mine);
  tp_.comm->all_gather(part_.data(), part_.size() * sizeof(float), gathered_.data());
  for (int t = 0; t < ranks; ++t) {
    const int begin = tp_.vocab_offsets[t];
    const size_t n = size_t(tp_.vocab_offsets[t + 1] - begin);
    for (int i = 0; i < m; ++i) {
      std::memcpy(logits + size_t(i) * vocab_size_ + begin, gathered_.data() + (size_t(t) * m + i) * width,
                  sizeof(float) * n);
    }
  }
}

}  // namespace tidal
