#include "cuda/sampling_kernels.h"

#include "cuda/cuda_check.h"

namespace tidal::cuda {

namespace {

constexpr int kThreads = 1024;
constexpr unsigned kFullMask = 0xffffffffu;

// Float bits mapped so unsigned order is numeric order; -0 counts as +0,
// as it compares equal on the host.
__device__ __forceinline__ uint32_t ordered(float f) {
  const uint32_t b = f == 0.0f ? 0u : __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Most likely first = largest key: higher logit, then lower id (the CPU
// sampler's order). Keys are distinct.
__device__ __forceinline__ uint64_t key_of(float logit, int id, int vocab) {
  return (uint64_t(ordered(logit)) << 32) | uint32_t(vocab - 1 - id);
}

__device__ __forceinline__ int id_of(uint64_t key, int vocab) { return vocab - 1 - int(uint32_t(key)); }

struct Sum {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct Min {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a < b ? a : b; }
};

// Reduces one value per thread with a fixed tree and gives every thread the
// result. Call from all threads of the block.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op) {
  __shared__ T warp_parts[kThreads / 32];
  __shared__ T result;
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_down_sync(kFullMask, v, offset));
  if (lane == 0) warp_parts[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = warp_parts[lane];  // kThreads / 32 == 32 warps
    for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_down_sync(kFullMask, v, offset));
    if (lane == 0) result = v;
  }
  __syncthreads();
  const T r = result;
  __syncthreads();  // the next call may overwrite `result`
  return r;
}

struct RowView {
  const float* logits;
  const float* probs;
  int vocab;
  uint64_t cut;  // smallest candidate key (top_k)

  // How many candidates have key >= v.
  __device__ int count_from(uint64_t v) const {
    const uint64_t from = v > cut ? v : cut;
    int n = 0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) n += key_of(logits[i], i, vocab) >= from;
    return block_reduce(n, Sum{});
  }
  // Probability mass of the candidates with key >= v.
  __device__ double mass_from(uint64_t v) const {
    const uint64_t from = v > cut ? v : cut;
    double m = 0.0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      if (key_of(logits[i], i, vocab) >= from) m += double(probs[i]);
    }
    return block_reduce(m, Sum{});
  }
};

// The largest candidate key v with holds(measure(v)), where measure falls as
// v rises and holds(measure(0)) is true: the shortest most-likely-first
// prefix whose measure satisfies `holds`. Logit bits first; id bits only
// when several candidates share the boundary logit.
template <typename Measure, typename Holds>
__device__ uint64_t search(const RowView& row, Measure measure, Holds holds) {
  uint64_t v = 0;
  for (int bit = 63; bit >= 32; --bit) {
    const uint64_t t = v | (uint64_t(1) << bit);
    if (holds(measure(t))) v = t;
  }
  const uint32_t boundary = uint32_t(v >> 32);
  int ties = 0;
  uint32_t low = 0;
  for (int i = threadIdx.x; i < row.vocab; i += kThreads) {
    const uint64_t k = key_of(row.logits[i], i, row.vocab);
    if (uint32_t(k >> 32) == boundary && k >= row.cut) {
      ++ties;
      low = Max{}(low, uint32_t(k));
    }
  }
  ties = block_reduce(ties, Sum{});
  low = block_reduce(low, Max{});
  if (ties <= 1) return v | low;
  int bits = 0;
  while ((1 << bits) < row.vocab) ++bits;
  for (int bit = bits - 1; bit >= 0; --bit) {
    const uint64_t t = v | (uint64_t(1) << bit);
    if (holds(measure(t))) v = t;
  }
  return v;
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const float* __restrict__ all_logits, int vocab, const SampleRow* __restrict__ rows,
                  float* __restrict__ all_probs, int32_t* __restrict__ tokens) {
  const SampleRow p = rows[blockIdx.x];
  const float* logits = all_logits + int64_t(blockIdx.x) * vocab;
  float* probs = all_probs + int64_t(blockIdx.x) * vocab;

  uint64_t top = 0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) top = Max{}(top, key_of(logits[i], i, vocab));
  top = block_reduce(top, Max{});
  if (p.temperature < 1e-5f) {
    if (threadIdx.x == 0) tokens[blockIdx.x] = id_of(top, vocab);
    return;
  }

  RowView row{logits, probs, vocab, 0};
  const auto count = [&](uint64_t v) { return row.count_from(v); };
  const auto mass = [&](uint64_t v) { return row.mass_from(v); };
  if (p.top_k > 0 && p.top_k < vocab) {
    row.cut = search(row, count, [&](int n) { return n >= p.top_k; });
  }

  // exp((logit - max) / T) exactly as the CPU sampler rounds it: float
  // subtract and multiply, then exp in double rounded once to float (what a
  // correctly rounded expf gives).
  const float max_logit = logits[id_of(top, vocab)], inv_t = 1.0f / p.temperature;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const bool candidate = key_of(logits[i], i, vocab) >= row.cut;
    probs[i] = candidate ? float(exp(double(__fmul_rn(__fsub_rn(logits[i], max_logit), inv_t)))) : 0.0f;
  }
  __syncthreads();

  uint64_t keep = row.cut;
  if (p.top_p < 1.0f) {
    const double target = double(p.top_p) * mass(0);
    keep = Max{}(keep, search(row, mass, [&](double m) { return m >= target; }));
  }
  if (p.min_p > 0.0f) {
    // The top candidate's probability is exp(0) = 1, so the bar is min_p itself.
    uint64_t lowest = ~uint64_t(0);
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const uint64_t k = key_of(logits[i], i, vocab);
      if (k >= row.cut && probs[i] >= p.min_p) lowest = Min{}(lowest, k);
    }
    lowest = block_reduce(lowest, Min{});
    keep = lowest == ~uint64_t(0) ? top : Max{}(keep, lowest);  // the top token always survives
  }

  const double target = p.u * mass(keep);
  const uint64_t drawn = search(row, mass, [&](double m) { return m > target; });
  if (threadIdx.x == 0) tokens[blockIdx.x] = id_of(Max{}(drawn, keep), vocab);
}

}  // namespace

void sample(const float* logits, int n_rows, int vocab, const SampleRow* rows, float* probs, int32_t* tokens,
            cudaStream_t stream) {
  if (n_rows <= 0) return;
  sample_kernel<<<unsigned(n_rows), kThreads, 0, stream>>>(logits, vocab, rows, probs, tokens);
  check_launch("sample");
}

}  // namespace tidal::cuda
