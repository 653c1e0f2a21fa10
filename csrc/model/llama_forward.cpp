#include "model/llama_forward.h"

#include <cstring>

namespace tidal {

LlamaForward::LlamaForward(const Model& model, Backend& backend) : model_(model), backend_(backend) {}

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

void LlamaForward::forward(KvCache& cache, const ForwardBatch& batch, float* logits) {
  const ModelConfig& c = model_.config;
  const int n = batch.meta.n_tokens;
  reserve(n);
  Backend& b = backend_;

  b.embed(model_.token_embedding, batch.tokens, n, x_.data());
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = model_.layers[l];
    b.rmsnorm(x_.data(), w.attn_norm.data(), n, c.dim, c.rms_eps, h_.data());
    b.matmul(w.wq, h_.data(), n, q_.data());
    b.matmul(w.wk, h_.data(), n, k_.data());
    b.matmul(w.wv, h_.data(), n, v_.data());
    b.rope(q_.data(), batch.meta.positions, n, c.n_heads, c.head_dim, c.rope_theta);
    b.rope(k_.data(), batch.meta.positions, n, c.n_kv_heads, c.head_dim, c.rope_theta);
    b.kv_write(cache, l, k_.data(), v_.data(), batch.meta);
    b.attention(cache, l, q_.data(), batch.meta, c.n_heads, attn_.data());
    b.matmul(w.wo, attn_.data(), n, h_.data());
    b.add(x_.data(), h_.data(), int64_t(n) * c.dim);

    b.rmsnorm(x_.data(), w.ffn_norm.data(), n, c.dim, c.rms_eps, h_.data());
    b.matmul(w.w_gate, h_.data(), n, gate_.data());
    b.matmul(w.w_up, h_.data(), n, up_.data());
    b.silu_mul(gate_.data(), up_.data(), int64_t(n) * c.hidden_dim);
    b.matmul(w.w_down, gate_.data(), n, h_.data());
    b.add(x_.data(), h_.data(), int64_t(n) * c.dim);
  }

  // Only the rows that sample pay for the final norm and the LM head.
  const int m = int(batch.logits_rows.size());
  if (m == 0) return;
  for (int i = 0; i < m; ++i) {
    std::memcpy(last_.data() + size_t(i) * c.dim, x_.data() + size_t(batch.logits_rows[i]) * c.dim,
                sizeof(float) * c.dim);
  }
  b.rmsnorm(last_.data(), model_.final_norm.data(), m, c.dim, c.rms_eps, last_.data());
  b.matmul(model_.lm_head, last_.data(), m, logits);
}

}  // namespace tidal
