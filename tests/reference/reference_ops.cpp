#include "reference/reference_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dequantize.h"

namespace tidal::ref {

namespace {

std::vector<float> dequantized_row(const Weight& w, int64_t r) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  dequantize_row(w.type, w.row(r), row.data(), w.cols);
  return row;
}

}  // namespace

void matmul(const Weight& w, const float* x, int n_tokens, float* y) {
  for (int64_t r = 0; r < w.rows; ++r) {
    const std::vector<float> row = dequantized_row(w, r);
    for (int t = 0; t < n_tokens; ++t) {
      double acc = 0.0;
      for (int64_t k = 0; k < w.cols; ++k) acc += double(x[t * w.cols + k]) * double(row[size_t(k)]);
      y[t * w.rows + r] = float(acc);
    }
  }
}

void embed(const Weight& table, const int32_t* ids, int n_tokens, float* out) {
  for (int t = 0; t < n_tokens; ++t) dequantize_row(table.type, table.row(ids[t]), out + t * table.cols, table.cols);
}

void rmsnorm(const float* x, const float* gamma, int n_tokens, int dim, float eps, float* out) {
  for (int t = 0; t < n_tokens; ++t) {
    double ss = 0.0;
    for (int i = 0; i < dim; ++i) ss += double(x[t * dim + i]) * double(x[t * dim + i]);
    const double scale = 1.0 / std::sqrt(ss / dim + double(eps));
    for (int i = 0; i < dim; ++i) out[t * dim + i] = float(double(x[t * dim + i]) * scale * double(gamma[i]));
  }
}

void rope(float* x, const int32_t* positions, int n_tokens, int n_heads, int head_dim, float theta) {
  for (int t = 0; t < n_tokens; ++t) {
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (size_t(t) * n_heads + h) * head_dim;
      for (int i = 0; i < head_dim / 2; ++i) {
        const double angle = double(positions[t]) * std::pow(double(theta), -2.0 * i / head_dim);
        const double x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = float(x0 * std::cos(angle) - x1 * std::sin(angle));
        v[2 * i + 1] = float(x0 * std::sin(angle) + x1 * std::cos(angle));
      }
    }
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    gate[i] = float(g / (1.0 + std::exp(-g)) * double(up[i]));
  }
}

void add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = float(double(x[i]) + double(y[i]));
}

// The Sylvester Hadamard matrix entry by entry: H[i][j] = (-1)^popcount(i & j).
void hadamard(float* x, int64_t n_rows, int width, int block) {
  std::vector<double> v(static_cast<size_t>(block));
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int b = 0; b < width; b += block) {
      float* row = x + r * width + b;
      for (int i = 0; i < block; ++i) {
        double acc = 0.0;
        for (int j = 0; j < block; ++j) acc += (__builtin_popcount(unsigned(i & j)) % 2 ? -1.0 : 1.0) * row[j];
        v[size_t(i)] = acc / std::sqrt(double(block));
      }
      for (int i = 0; i < block; ++i) row[i] = float(v[size_t(i)]);
    }
  }
}

void kv_write(KvCache& cache, int layer, const float* k, const float* v, const AttentionMeta& meta) {
  const KvCacheShape& s = cache.shape();
  for (int t = 0; t < meta.n_tokens; ++t) {
    const int block = meta.slot_mapping[t] / s.block_size, slot = meta.slot_mapping[t] % s.block_size;
    for (int h = 0; h < s.n_kv_heads; ++h) {
      for (int d = 0; d < s.head_dim; ++d) {
        const size_t src = (size_t(t) * s.n_kv_heads + h) * s.head_dim + d;
        cache.key(layer, block, h)[slot * s.head_dim + d] = k[src];
        cache.value(layer, block, h)[slot * s.head_dim + d] = v[src];
      }
    }
  }
}

void attention(const KvCache& cache, int layer, const float* q, const AttentionMeta& meta, int n_heads, float* out) {
  const KvCacheShape& s = cache.shape();
  const int hd = s.head_dim, group = n_heads / s.n_kv_heads;
  for (int t = 0; t < meta.n_tokens; ++t) {
    const std::span<const int32_t> table = meta.block_tables[size_t(meta.seq_index[t])];
    const int n = meta.positions[t] + 1;
    for (int h = 0; h < n_heads; ++h) {
      const float* qh = q + (size_t(t) * n_heads + h) * hd;
      auto key = [&](int p) { return cache.key(layer, table[size_t(p / s.block_size)], h / group) + (p % s.block_size) * hd; };
      auto value = [&](int p) {
        return cache.value(layer, table[size_t(p / s.block_size)], h / group) + (p % s.block_size) * hd;
      };
      std::vector<double> score(static_cast<size_t>(n));
      double max = -INFINITY;
      for (int p = 0; p < n; ++p) {
        double dot = 0.0;
        for (int d = 0; d < hd; ++d) dot += double(qh[d]) * double(key(p)[d]);
        score[size_t(p)] = dot / std::sqrt(double(hd));
        max = std::max(max, score[size_t(p)]);
      }
      double total = 0.0;
      for (double& e : score) total += (e = std::exp(e - max));
      for (int d = 0; d < hd; ++d) {
        double acc = 0.0;
        for (int p = 0; p < n; ++p) acc += score[size_t(p)] * double(value(p)[d]);
        out[(size_t(t) * n_heads + h) * hd + d] = float(acc / total);
      }
    }
  }
}

}  // namespace tidal::ref
