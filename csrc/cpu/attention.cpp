#include "cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "core/error.h"
#include "cpu/dot_kernels.h"
#include "cpu/simd.h"

namespace tidal::cpu {

namespace {

// Below this many score-and-value multiply-adds the job runs on the calling
// thread, where waking the pool would cost more than it saves.
constexpr int64_t kMinParallelMacs = int64_t(1) << 15;

float max_of(const float* s, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, s[i]);
  return m;
}

// s[i] = e^(s[i] - shift).
void exp_shifted(float* s, int64_t n, float shift) {
#if defined(TIDAL_CPU_AVX512)
  const __m512 sh = _mm512_set1_ps(shift);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(s + i, exp_ps(_mm512_sub_ps(_mm512_loadu_ps(s + i), sh)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(s + i, m, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), sh)));
  }
#elif defined(TIDAL_CPU_AVX2)
  const __m256 sh = _mm256_set1_ps(shift);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(s + i, exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + i), sh)));
  if (i < n) {
    const __m256i m = tail_mask8(n - i);
    _mm256_maskstore_ps(s + i, m, exp_ps(_mm256_sub_ps(_mm256_maskload_ps(s + i, m), sh)));
  }
#else
  for (int64_t i = 0; i < n; ++i) s[i] = std::exp(s[i] - shift);
#endif
}

// One query head over positions [0, n) of its sequence. Every step runs in
// a fixed order over positions, so the result depends only on the query and
// the cache, never on the rest of the batch.
void attend(const KvCache& cache, int layer, const float* q, int kv_head, int32_t n, std::span<const int32_t> table,
            float* scores, float* out) {
  const KvCacheShape& shape = cache.shape();
  const int hd = shape.head_dim, bs = shape.block_size;
  for (int32_t p = 0, b = 0; p < n; p += bs, ++b) {
    dot_block(cache.key(layer, table[b], kv_head), hd, std::min(bs, n - p), q, hd, 1, hd, scores + p, 1);
  }
  const float scale = 1.0f / std::sqrt(float(hd));
  for (int32_t p = 0; p < n; ++p) scores[p] *= scale;
  exp_shifted(scores, n, max_of(scores, n));
  const float inv_total = 1.0f / sum(scores, n);

  std::fill(out, out + hd, 0.0f);
  for (int32_t p = 0; p < n; ++p) {
    const float* v = cache.value(layer, table[p / bs], kv_head) + (p % bs) * hd;
    const float w = scores[p];
    for (int d = 0; d < hd; ++d) out[d] = mul_add(w, v[d], out[d]);
  }
  for (int d = 0; d < hd; ++d) out[d] *= inv_total;
}

}  // namespace

void attention(ThreadPool& pool, std::vector<ScratchBuffer>& scratch, const KvCache& cache, int layer, const float* q,
               const AttentionMeta& meta, int n_heads, float* out) {
  const KvCacheShape& shape = cache.shape();
  const int hd = shape.head_dim, group = n_heads / shape.n_kv_heads;
  // Checked here, on the calling thread, because workers cannot throw.
  int32_t max_len = 0;
  int64_t total_len = 0;
  for (int t = 0; t < meta.n_tokens; ++t) {
    const int32_t seq = meta.seq_index[t], pos = meta.positions[t];
    if (seq < 0 || size_t(seq) >= meta.block_tables.size() || pos < 0 ||
        size_t(pos / shape.block_size) >= meta.block_tables[size_t(seq)].size()) {
      throw Error(ErrorCode::kInvalidArgument, "attention: token " + std::to_string(t) + " at position " +
                                                   std::to_string(pos) + " is outside its block table");
    }
    max_len = std::max(max_len, pos + 1);
    total_len += pos + 1;
  }

  const int64_t items = int64_t(meta.n_tokens) * n_heads;
  // Work per (token, head) grows with its position, so threads take items
  // one at a time rather than fixed ranges.
  std::atomic<int64_t> next{0};
  auto body = [&](int index, int) {
    float* scores = scratch[size_t(index)].get(size_t(max_len));
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const int t = int(i / n_heads), h = int(i % n_heads);
      attend(cache, layer, q + i * hd, h / group, meta.positions[t] + 1, meta.block_tables[size_t(meta.seq_index[t])],
             scores, out + i * hd);
    }
  };
  if (total_len * n_heads * hd * 2 < kMinParallelMacs) {
    body(0, 1);
  } else {
    pool.run(std::cref(body));  // cref: the std::function wraps a reference, no copy to the heap
  }
}

}  // namespace tidal::cpu
