#include "device_forward.h"

namespace tidal::cuda::test {

void DeviceForward::reserve(int n_tokens) {
  if (n_tokens <= capacity_) return;
  const ModelConfig& c = model_.config;
  const size_t n = size_t(n_tokens) * sizeof(float);
  x_ = DeviceBuffer(n * c.dim);
  h_ = DeviceBuffer(n * c.dim);
  q_ = DeviceBuffer(n * c.n_heads * c.head_dim);
  k_ = DeviceBuffer(n * c.n_kv_heads * c.head_dim);
  v_ = DeviceBuffer(n * c.n_kv_heads * c.head_dim);
  attn_ = DeviceBuffer(n * c.n_heads * c.head_dim);
  gate_ = DeviceBuffer(n * c.hidden_dim);
  up_ = DeviceBuffer(n * c.hidden_dim);
  last_ = DeviceBuffer(n * c.dim);
  capacity_ = n_tokens;
}

void DeviceForward::forward(CudaKvCache& cache, const int32_t* tokens, const AttentionMeta& meta,
                            const std::vector<int32_t>& logits_rows, float* logits) {
  const ModelConfig& c = model_.config;
  const int n = meta.n_tokens;
  reserve(n);
  CudaBackend& b = backend_;
  float *x = x_.as<float>(), *h = h_.as<float>(), *q = q_.as<float>(), *k = k_.as<float>(), *v = v_.as<float>();
  float *attn = attn_.as<float>(), *gate = gate_.as<float>(), *up = up_.as<float>();

  b.embed(model_.token_embedding, tokens, n, x);
  for (int l = 0; l < c.n_layers; ++l) {
    const DeviceLayerWeights& w = model_.layers[size_t(l)];
    b.rmsnorm(x, w.attn_norm, n, c.dim, c.rms_eps, h);
    b.matmul(w.wq, h, n, q);
    b.matmul(w.wk, h, n, k);
    b.matmul(w.wv, h, n, v);
    b.rope(q, meta.positions, n, c.n_heads, c.head_dim, c.rope_theta);
    b.rope(k, meta.positions, n, c.n_kv_heads, c.head_dim, c.rope_theta);
    b.kv_write(cache, l, k, v, meta);
    b.attention(cache, l, q, meta, c.n_heads, attn);
    b.matmul(w.wo, attn, n, h);
    b.add(x, h, int64_t(n) * c.dim);

    b.rmsnorm(x, w.ffn_norm, n, c.dim, c.rms_eps, h);
    b.matmul(w.w_gate, h, n, gate);
    b.matmul(w.w_up, h, n, up);
    b.silu_mul(gate, up, int64_t(n) * c.hidden_dim);
    if (c.ffn_hadamard_block > 0) b.hadamard(gate, n, c.hidden_dim, c.ffn_hadamard_block);
    b.matmul(w.w_down, gate, n, h);
    b.add(x, h, int64_t(n) * c.dim);
  }

  const int m = int(logits_rows.size());
  if (m == 0) return;
  b.gather_rows(x, logits_rows.data(), m, c.dim, last_.as<float>());
  b.rmsnorm(last_.as<float>(), model_.final_norm, m, c.dim, c.rms_eps, last_.as<float>());
  b.matmul(model_.lm_head, last_.as<float>(), m, logits);
}

}  // namespace tidal::cuda::test
