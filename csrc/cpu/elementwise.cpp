#include "cpu/elementwise.h"

#include <algorithm>
#include <cmath>

#include "core/fwht.h"
#include "cpu/dot_kernels.h"
#include "cpu/simd.h"

namespace tidal::cpu {

void rmsnorm_rows(const float* x, const float* gamma, int64_t n_rows, int dim, float eps, float* out) {
  for (int64_t t = 0; t < n_rows; ++t) {
    const float* xr = x + t * dim;
    float* o = out + t * dim;
    const float scale = 1.0f / std::sqrt(dot(xr, xr, dim) / float(dim) + eps);
    for (int i = 0; i < dim; ++i) o[i] = xr[i] * scale * gamma[i];
  }
}

void RopeTable::ensure(int head_dim, float theta, int32_t max_position) {
  if (head_dim != head_dim_ || theta != theta_) {
    head_dim_ = head_dim;
    theta_ = theta;
    size_ = 0;
    values_.clear();
  }
  if (max_position < size_) return;
  // Geometric growth keeps the number of rebuilds logarithmic in the context.
  const auto new_size = int32_t(std::max<int64_t>(int64_t(max_position) + 1, int64_t(size_) * 2));
  const int half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) inv_freq[size_t(i)] = std::pow(double(theta), -2.0 * i / head_dim);
  values_.resize(size_t(new_size) * size_t(head_dim));
  for (int32_t pos = size_; pos < new_size; ++pos) {
    float* cs = values_.data() + size_t(pos) * size_t(head_dim);
    for (int i = 0; i < half; ++i) {
      // Float angles lose ~5e-4 rad at position 8000; double keeps the
      // rotation within float rounding of the exact one.
      const double angle = double(pos) * inv_freq[size_t(i)];
      cs[i] = float(std::cos(angle));
      cs[half + i] = float(std::sin(angle));
    }
  }
  size_ = new_size;
}

void rope_rows(float* x, const int32_t* positions, int64_t n_tokens, int n_heads, int head_dim,
               const RopeTable& table) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* cs = table.at(positions[t]);
    const float* sn = cs + half;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = mul_add(x0, cs[i], -(x1 * sn[i]));
        v[2 * i + 1] = mul_add(x0, sn[i], x1 * cs[i]);
      }
    }
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
#if defined(TIDAL_CPU_AVX512)
  auto silu_mul16 = [](__m512 g, __m512 u) {
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(gate + i, silu_mul16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(gate + i, m, silu_mul16(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
  }
#elif defined(TIDAL_CPU_AVX2)
  auto silu_mul8 = [](__m256 g, __m256 u) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
  };
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(gate + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {
    const __m256i m = tail_mask8(n - i);
    _mm256_maskstore_ps(gate + i, m, silu_mul8(_mm256_maskload_ps(gate + i, m), _mm256_maskload_ps(up + i, m)));
  }
#else
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
#endif
}

void add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void hadamard_rows(float* x, int64_t n_rows, int width, int block) {
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int b = 0; b < width; b += block) fwht(x + r * width + b, block);
  }
}

}  // namespace tidal::cpu
