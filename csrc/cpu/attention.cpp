#include "cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "core/dequantize.h"
#include "core/error.h"
#include "cpu/dot_kernels.h"
#include "cpu/simd.h"

namespace tidal::cpu {

namespace {

// Positions per chunk, rounded up to whole blocks: long enough that the
// merge is negligible, short enough that a decode step at 8K context splits
// into several items per KV head.
constexpr int kChunkTarget = 1024;
// Tokens per run: their query rows share each K/V block while it is in L1.
constexpr int kRunTokens = 8;
// Below this many multiply-adds the work runs on the calling thread, where
// waking the pool would cost more than it saves.
constexpr int64_t kMinParallelMacs = int64_t(1) << 15;

float max_of(const float* s, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
#if defined(TIDAL_CPU_AVX512)
  __m512 vm = _mm512_set1_ps(m);
  for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(s + i));
  m = _mm512_reduce_max_ps(vm);
#endif
  for (; i < n; ++i) m = std::max(m, s[i]);
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

// For each of n rows r: acc_r[d] += sum over j < m of w_r[j] * v[j*hd + d]
// for d < hd, where w_r = w + r * w_stride and acc_r = acc + r * acc_stride.
// Each element adds its terms in increasing j, one rounding each. Rows are
// done together so one load of v serves them all and their FMA chains
// interleave instead of waiting on each other. v is F32 or F16 (uint16_t
// half bits): halves are widened exactly as they are loaded, so the sums are
// those of the F32 path over the same values.
inline float widen(float x) { return x; }
inline float widen(uint16_t h) { return fp16_to_fp32(h); }

#if defined(TIDAL_CPU_AVX512) || defined(TIDAL_CPU_AVX2)

#if defined(TIDAL_CPU_AVX512)
using V = __m512;
constexpr int kLanes = 16;
inline V load(const float* p) { return _mm512_loadu_ps(p); }
inline V load(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
inline V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline V broadcast(float a) { return _mm512_set1_ps(a); }
#else
using V = __m256;
constexpr int kLanes = 8;
inline V load(const float* p) { return _mm256_loadu_ps(p); }
inline V load(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline void store(float* p, V v) { _mm256_storeu_ps(p, v); }
inline V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline V broadcast(float a) { return _mm256_set1_ps(a); }
#endif

// N rows x C vectors of columns, all in registers across the m positions.
template <int N, int C, typename T>
void accumulate_columns(const float* w, int64_t w_stride, const T* v, int m, int hd, float* acc,
                        int64_t acc_stride) {
  V a[N][C];
  for (int r = 0; r < N; ++r) {
    for (int c = 0; c < C; ++c) a[r][c] = load(acc + r * acc_stride + c * kLanes);
  }
  for (int j = 0; j < m; ++j) {
    V vj[C];
    for (int c = 0; c < C; ++c) vj[c] = load(v + j * hd + c * kLanes);
#pragma GCC unroll 4
    for (int r = 0; r < N; ++r) {
      const V wr = broadcast(w[r * w_stride + j]);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) a[r][c] = fmadd(wr, vj[c], a[r][c]);
    }
  }
  for (int r = 0; r < N; ++r) {
    for (int c = 0; c < C; ++c) store(acc + r * acc_stride + c * kLanes, a[r][c]);
  }
}

template <int N, typename T>
void accumulate_rows(const float* w, int64_t w_stride, const T* v, int m, int hd, float* acc, int64_t acc_stride) {
  int d = 0;
  for (; d + 4 * kLanes <= hd; d += 4 * kLanes) accumulate_columns<N, 4>(w, w_stride, v + d, m, hd, acc + d, acc_stride);
  for (; d + kLanes <= hd; d += kLanes) accumulate_columns<N, 1>(w, w_stride, v + d, m, hd, acc + d, acc_stride);
  for (; d < hd; ++d) {
    for (int r = 0; r < N; ++r) {
      for (int j = 0; j < m; ++j) {
        acc[r * acc_stride + d] = mul_add(w[r * w_stride + j], widen(v[j * hd + d]), acc[r * acc_stride + d]);
      }
    }
  }
}

template <typename T>
void accumulate_values(const float* w, int64_t w_stride, int n, const T* v, int m, int hd, float* acc,
                       int64_t acc_stride) {
  for (int r = 0; r < n; r += 4) {
    const float* wr = w + r * w_stride;
    float* ar = acc + r * acc_stride;
    switch (std::min(4, n - r)) {
      case 1: accumulate_rows<1>(wr, w_stride, v, m, hd, ar, acc_stride); break;
      case 2: accumulate_rows<2>(wr, w_stride, v, m, hd, ar, acc_stride); break;
      case 3: accumulate_rows<3>(wr, w_stride, v, m, hd, ar, acc_stride); break;
      default: accumulate_rows<4>(wr, w_stride, v, m, hd, ar, acc_stride); break;
    }
  }
}

#else

template <typename T>
void accumulate_values(const float* w, int64_t w_stride, int n, const T* v, int m, int hd, float* acc,
                       int64_t acc_stride) {
  for (int r = 0; r < n; ++r) {
    for (int j = 0; j < m; ++j) {
      for (int d = 0; d < hd; ++d) {
        acc[r * acc_stride + d] = mul_add(w[r * w_stride + j], widen(v[j * hd + d]), acc[r * acc_stride + d]);
      }
    }
  }
}

#endif

using Run = AttentionWorkspace::Run;

// Everything one call shares between its work items.
struct Job {
  const KvCache& cache;
  int layer;
  const float* q;
  const AttentionMeta& meta;
  int n_heads, group, chunk, max_chunks;
  float* partials;
  bool f16;  // the cache holds halves

  int hd() const { return cache.shape().head_dim; }
  // [head_dim] unnormalized output, then the chunk's max score and sum of exponentials.
  float* partial(int64_t token, int head, int c) const {
    return partials + ((token * n_heads + head) * max_chunks + c) * (hd() + 2);
  }
};

// scores[r * job.chunk + j] = dot(query row r, key j of kv_head in block)
// for r < rows, j < n. F16 keys are widened in registers as the dot products
// use them (dot_block_weights), which gives the bits dot_block gives on
// their F32 values.
void score_keys(const Job& job, int32_t block, int kv_head, int n, const float* queries, int rows, float* scores) {
  const int hd = job.hd();
  if (job.f16) {
    const Weight keys{.type = DType::F16,
                      .rows = n,
                      .cols = hd,
                      .data = reinterpret_cast<const uint8_t*>(job.cache.key_f16(job.layer, block, kv_head))};
    dot_block_weights(keys, 0, n, queries, hd, rows, scores, job.chunk);
  } else {
    dot_block(job.cache.key(job.layer, block, kv_head), hd, n, queries, hd, rows, hd, scores, job.chunk);
  }
}

// Chunk c of KV head kv_head for the tokens of run that reach it. scratch
// holds the run's query rows for this KV head and their scores.
void attend_chunk(const Job& job, const Run& run, int kv_head, int c, float* scratch) {
  const KvCacheShape& shape = job.cache.shape();
  const int hd = shape.head_dim, bs = shape.block_size, g = job.group;
  const int32_t c0 = c * job.chunk, c1 = c0 + job.chunk;
  const int32_t skip = std::max(0, c0 - run.first_pos);  // tokens before the chunk see none of it
  const int32_t n_tokens = run.n_tokens - skip, rows = n_tokens * g;
  const int32_t first_pos = run.first_pos + skip, first_token = run.first_token + skip;
  const int32_t end = std::min(c1, first_pos + n_tokens);  // past the last position any token sees
  const std::span<const int32_t> table = job.meta.block_tables[size_t(job.meta.seq_index[first_token])];

  // The run's query rows for this KV head, contiguous so one dot_block call
  // scores every row against a block of keys.
  float* queries = scratch;
  float* scores = scratch + size_t(kRunTokens) * g * hd;
  for (int32_t i = 0; i < n_tokens; ++i) {
    std::memcpy(queries + size_t(i) * g * hd, job.q + ((int64_t(first_token) + i) * job.n_heads + kv_head * g) * hd,
                sizeof(float) * size_t(g) * hd);
  }
  for (int32_t p = c0; p < end; p += bs) {
    // Rows of earlier tokens also get scores for keys past their position;
    // those are never read.
    score_keys(job, table[size_t(p / bs)], kv_head, std::min(bs, end - p), queries, rows, scores + (p - c0));
  }

  const float scale = 1.0f / std::sqrt(float(hd));
  for (int32_t i = 0; i < n_tokens; ++i) {
    const int32_t n = std::min(c1, first_pos + i + 1) - c0;
    for (int h = 0; h < g; ++h) {
      float* s = scores + size_t(i * g + h) * job.chunk;
      for (int32_t p = 0; p < n; ++p) s[p] *= scale;
      const float max = max_of(s, n);
      exp_shifted(s, n, max);
      float* part = job.partial(first_token + i, kv_head * g + h, c);
      std::fill(part, part + hd, 0.0f);
      part[hd] = max;
      part[hd + 1] = sum(s, n);
    }
  }
  for (int32_t p = c0; p < end; p += bs) {
    const int32_t block = table[size_t(p / bs)];
    for (int32_t i = 0; i < n_tokens; ++i) {
      const int32_t m = std::min(bs, first_pos + i + 1 - p);
      if (m <= 0) continue;
      const float* w = scores + size_t(i * g) * job.chunk + (p - c0);
      float* acc = job.partial(first_token + i, kv_head * g, c);
      const int64_t acc_stride = int64_t(job.max_chunks) * (hd + 2);
      if (job.f16) {
        accumulate_values(w, job.chunk, g, job.cache.value_f16(job.layer, block, kv_head), m, hd, acc, acc_stride);
      } else {
        accumulate_values(w, job.chunk, g, job.cache.value(job.layer, block, kv_head), m, hd, acc, acc_stride);
      }
    }
  }
}

// Merges the chunks of one (token, head) in chunk order into its output.
void merge_chunks(const Job& job, int64_t token, int head, float* out) {
  const int hd = job.hd(), n_chunks = job.meta.positions[token] / job.chunk + 1;
  float max = -std::numeric_limits<float>::infinity();
  for (int c = 0; c < n_chunks; ++c) max = std::max(max, job.partial(token, head, c)[hd]);
  float total = 0.0f;
  for (int c = 0; c < n_chunks; ++c) {
    const float* part = job.partial(token, head, c);
    const float f = std::exp(part[hd] - max);
    total = mul_add(part[hd + 1], f, total);
    for (int d = 0; d < hd; ++d) out[d] = c == 0 ? part[d] * f : mul_add(f, part[d], out[d]);
  }
  const float inv_total = 1.0f / total;
  for (int d = 0; d < hd; ++d) out[d] *= inv_total;
}

}  // namespace

void attention(ThreadPool& pool, std::vector<ScratchBuffer>& scratch, AttentionWorkspace& workspace,
               const KvCache& cache, int layer, const float* q, const AttentionMeta& meta, int n_heads, float* out) {
  const KvCacheShape& shape = cache.shape();
  const int hd = shape.head_dim, bs = shape.block_size;
  if (meta.n_tokens <= 0) return;
  if (n_heads <= 0 || n_heads % shape.n_kv_heads != 0) {
    throw Error(ErrorCode::kInvalidArgument, "attention: " + std::to_string(n_heads) + " query heads over " +
                                                 std::to_string(shape.n_kv_heads) + " KV heads");
  }
  const int group = n_heads / shape.n_kv_heads, chunk = (kChunkTarget + bs - 1) / bs * bs;

  // Checked here, on the calling thread, because workers cannot throw.
  int32_t max_pos = 0;
  int64_t total_len = 0;
  std::vector<Run>& runs = workspace.runs;
  runs.clear();
  for (int t = 0; t < meta.n_tokens; ++t) {
    const int32_t seq = meta.seq_index[t], pos = meta.positions[t];
    if (seq < 0 || size_t(seq) >= meta.block_tables.size() || pos < 0 ||
        size_t(pos / bs) >= meta.block_tables[size_t(seq)].size()) {
      throw Error(ErrorCode::kInvalidArgument, "attention: token " + std::to_string(t) + " at position " +
                                                   std::to_string(pos) + " is outside its block table");
    }
    max_pos = std::max(max_pos, pos);
    total_len += pos + 1;
    if (!runs.empty()) {
      Run& run = runs.back();
      if (run.n_tokens < kRunTokens && meta.seq_index[run.first_token] == seq && run.first_pos + run.n_tokens == pos) {
        ++run.n_tokens;
        continue;
      }
    }
    runs.push_back({t, 1, pos});
  }

  std::vector<AttentionWorkspace::Item>& items = workspace.items;
  items.clear();
  for (int32_t r = 0; r < int32_t(runs.size()); ++r) {
    const int32_t last_pos = runs[size_t(r)].first_pos + runs[size_t(r)].n_tokens - 1;
    for (int kv = 0; kv < shape.n_kv_heads; ++kv) {
      for (int32_t c = 0; c <= last_pos / chunk; ++c) items.push_back({r, kv, c});
    }
  }

  const int max_chunks = max_pos / chunk + 1;
  const Job job{cache,
                layer,
                q,
                meta,
                n_heads,
                group,
                chunk,
                max_chunks,
                workspace.partials.get(size_t(meta.n_tokens) * n_heads * max_chunks * (hd + 2)),
                shape.dtype == DType::F16};
  const bool parallel = total_len * n_heads * hd * 2 >= kMinParallelMacs && pool.size() > 1;

  // Items differ in cost, so threads take them one at a time; the latest
  // runs (longest prefixes) go first to shorten the tail.
  std::atomic<int64_t> next{0};
  const int64_t n_items = int64_t(items.size());
  auto chunks = [&](int index, int) {
    float* buffer = scratch[size_t(index)].get(size_t(kRunTokens) * group * (hd + chunk));
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n_items;) {
      const AttentionWorkspace::Item& item = items[size_t(n_items - 1 - i)];
      attend_chunk(job, runs[size_t(item.run)], item.kv_head, item.chunk, buffer);
    }
  };
  auto merge = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) merge_chunks(job, i / n_heads, int(i % n_heads), out + i * hd);
  };
  if (parallel) {
    pool.run(std::cref(chunks));  // cref: the std::function wraps a reference, no copy to the heap
    pool.parallel_for(int64_t(meta.n_tokens) * n_heads, std::cref(merge));
  } else {
    chunks(0, 1);
    merge(0, int64_t(meta.n_tokens) * n_heads);
  }
}

}  // namespace tidal::cpu
