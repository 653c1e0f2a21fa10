#include "cuda/attention_kernels.h"

#include <cuda_pipeline.h>

#include <cmath>

#include "cuda/cuda_check.h"

namespace tidal::cuda {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;

// A query row's softmax state over some positions: running max m, sum of
// exp(score - m), and the unnormalized output, of which each lane holds the
// float4 chunks lane, lane + 32, ... of head_dim.
template <int C>
struct Softmax {
  float m = -INFINITY;
  float l = 0.0f;
  float4 acc[C];
};

__device__ __forceinline__ float4 scale_add(float4 a, float sa, float4 b, float sb) {
  return make_float4(__fadd_rn(__fmul_rn(a.x, sa), __fmul_rn(b.x, sb)), __fadd_rn(__fmul_rn(a.y, sa), __fmul_rn(b.y, sb)),
                     __fadd_rn(__fmul_rn(a.z, sa), __fmul_rn(b.z, sb)), __fadd_rn(__fmul_rn(a.w, sa), __fmul_rn(b.w, sb)));
}

// s <- s (+) p: the one way partitions are combined, in the attention kernel
// and the merge kernel alike (explicit roundings, so both compile to the
// same arithmetic).
template <int C>
__device__ __forceinline__ void fold(Softmax<C>& s, const Softmax<C>& p) {
  const float m = fmaxf(s.m, p.m);
  const float a = expf(__fsub_rn(s.m, m)), b = expf(__fsub_rn(p.m, m));
  s.l = __fadd_rn(__fmul_rn(s.l, a), __fmul_rn(p.l, b));
#pragma unroll
  for (int i = 0; i < C; ++i) s.acc[i] = scale_add(s.acc[i], a, p.acc[i], b);
  s.m = m;
}

template <int C>
__device__ __forceinline__ void store_output(const Softmax<C>& s, int hd4, int lane, float* out) {
#pragma unroll
  for (int i = 0; i < C; ++i) {
    const int c = lane + 32 * i;
    if (c < hd4) {
      const float4 a = s.acc[i];
      reinterpret_cast<float4*>(out)[c] =
          make_float4(__fdiv_rn(a.x, s.l), __fdiv_rn(a.y, s.l), __fdiv_rn(a.z, s.l), __fdiv_rn(a.w, s.l));
    }
  }
}

// Partial row layout: head_dim floats of output, then m, then l (padded to
// keep rows 16-byte aligned).
template <int C>
__device__ __forceinline__ void store_partial(const Softmax<C>& s, int hd4, int lane, float* row) {
#pragma unroll
  for (int i = 0; i < C; ++i) {
    const int c = lane + 32 * i;
    if (c < hd4) reinterpret_cast<float4*>(row)[c] = s.acc[i];
  }
  if (lane == 0) {
    row[4 * hd4] = s.m;
    row[4 * hd4 + 1] = s.l;
  }
}

template <int C>
__device__ __forceinline__ Softmax<C> load_partial(const float* row, int hd4, int lane) {
  Softmax<C> s;
#pragma unroll
  for (int i = 0; i < C; ++i) {
    const int c = lane + 32 * i;
    s.acc[i] = c < hd4 ? reinterpret_cast<const float4*>(row)[c] : make_float4(0, 0, 0, 0);
  }
  s.m = row[4 * hd4];
  s.l = row[4 * hd4 + 1];
  return s;
}

// Starts the asynchronous copy of positions [tile_pos, tile_pos + kTile)
// (those <= last_pos) of one KV head into shared memory.
__device__ __forceinline__ void load_tile(const AttentionArgs& a, const int32_t* table, int kv_head, int tile_pos,
                                          int last_pos, float4* k_tile, float4* v_tile, int hd4, int row4) {
  for (int idx = threadIdx.x; idx < kTile * hd4; idx += blockDim.x) {
    const int j = idx / hd4, c = idx - j * hd4, pos = tile_pos + j;
    if (pos > last_pos) continue;
    const int64_t block = table[pos / a.block_size];
    const int64_t offset = ((block * a.n_kv_heads + kv_head) * a.block_size + pos % a.block_size) * a.head_dim + 4 * c;
    __pipeline_memcpy_async(k_tile + j * row4 + c, a.keys + offset, sizeof(float4));
    __pipeline_memcpy_async(v_tile + j * row4 + c, a.values + offset, sizeof(float4));
  }
}

// One warp, one query row, one tile: lane j scores position tile_pos + j.
template <int C>
__device__ __forceinline__ void attend_tile(const float4* k_tile, const float4* v_tile, const float4* q, float* p_row,
                                            int n_valid, float scale, int hd4, int row4, int lane, Softmax<C>& s) {
  float score = -INFINITY;
  if (lane < n_valid) {
    const float4* k = k_tile + lane * row4;
    float dot = 0.0f;
    for (int c = 0; c < hd4; ++c) {
      const float4 kv = k[c], qv = q[c];
      dot = fmaf(qv.x, kv.x, dot);
      dot = fmaf(qv.y, kv.y, dot);
      dot = fmaf(qv.z, kv.z, dot);
      dot = fmaf(qv.w, kv.w, dot);
    }
    score = __fmul_rn(dot, scale);
  }
  float tile_max = score;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, offset));
  const float m = fmaxf(s.m, tile_max);  // finite: lane 0 is always valid
  const float alpha = expf(__fsub_rn(s.m, m));
  const float p = lane < n_valid ? expf(__fsub_rn(score, m)) : 0.0f;
  float sum = p;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) sum = __fadd_rn(sum, __shfl_xor_sync(kFullMask, sum, offset));
  sum = __shfl_sync(kFullMask, sum, 0);  // lanes' butterfly sums may differ in rounding; lane 0's is the one
  s.l = __fadd_rn(__fmul_rn(s.l, alpha), sum);
  s.m = m;
  p_row[lane] = p;
  __syncwarp();
#pragma unroll
  for (int i = 0; i < C; ++i) {
    const int c = lane + 32 * i;
    if (c >= hd4) continue;
    float4 acc = s.acc[i];
    acc = make_float4(__fmul_rn(acc.x, alpha), __fmul_rn(acc.y, alpha), __fmul_rn(acc.z, alpha), __fmul_rn(acc.w, alpha));
    for (int j = 0; j < n_valid; ++j) {
      const float pj = p_row[j];
      const float4 v = v_tile[j * row4 + c];
      acc.x = fmaf(pj, v.x, acc.x);
      acc.y = fmaf(pj, v.y, acc.y);
      acc.z = fmaf(pj, v.z, acc.z);
      acc.w = fmaf(pj, v.w, acc.w);
    }
    s.acc[i] = acc;
  }
  __syncwarp();  // p_row is rewritten by the next tile
}

// Block = one AttentionItem x one KV head; warp w = query w / group of the
// item, head w % group of the KV head's group.
template <int C>
__global__ void __launch_bounds__(1024) attention_kernel(AttentionArgs a) {
  extern __shared__ float4 smem[];
  const int hd4 = a.head_dim / 4, row4 = hd4 + 1;  // K/V rows padded by one float4 (no bank conflicts)
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  float4* k_tiles = smem;                        // [2][kTile][row4]
  float4* v_tiles = k_tiles + 2 * kTile * row4;  // [2][kTile][row4]
  float4* q_rows = v_tiles + 2 * kTile * row4;   // [warps][hd4]
  float* p_rows = reinterpret_cast<float*>(q_rows + warps * hd4);  // [warps][kTile]

  const AttentionItem item = a.items[blockIdx.x];
  const int kv_head = blockIdx.y;
  const int query = warp / a.group;
  const bool active = query < item.n_queries;
  const int token = item.first_token + (active ? query : 0);
  const int head = kv_head * a.group + warp % a.group;
  const int qpos = active ? a.positions[token] : -1;
  const int last_pos = a.positions[item.first_token + item.n_queries - 1];
  const int32_t* table = a.tables + int64_t(item.seq) * a.table_stride;

  float4* q = q_rows + warp * hd4;
  if (active) {
    const float4* src = reinterpret_cast<const float4*>(a.q + (int64_t(token) * a.n_heads + head) * a.head_dim);
    for (int c = lane; c < hd4; c += 32) q[c] = src[c];
  }
  float* p_row = p_rows + warp * kTile;

  Softmax<C> total;
  for (int part = item.part_begin; part < item.part_end; ++part) {
    const int begin = part * kPartition;
    const int end = min(begin + kPartition, last_pos + 1);
    const int n_tiles = (end - begin + kTile - 1) / kTile;
    Softmax<C> s;
#pragma unroll
    for (int i = 0; i < C; ++i) s.acc[i] = make_float4(0, 0, 0, 0);
    load_tile(a, table, kv_head, begin, last_pos, k_tiles, v_tiles, hd4, row4);
    __pipeline_commit();
    for (int t = 0; t < n_tiles; ++t) {
      const int buf = t & 1, tile_pos = begin + t * kTile;
      if (t + 1 < n_tiles) {
        load_tile(a, table, kv_head, tile_pos + kTile, last_pos, k_tiles + (buf ^ 1) * kTile * row4,
                  v_tiles + (buf ^ 1) * kTile * row4, hd4, row4);
      }
      __pipeline_commit();
      __pipeline_wait_prior(1);
      __syncthreads();
      if (active && tile_pos <= qpos) {
        attend_tile<C>(k_tiles + buf * kTile * row4, v_tiles + buf * kTile * row4, q, p_row,
                       min(kTile, qpos - tile_pos + 1), a.scale, hd4, row4, lane, s);
      }
      __syncthreads();  // the buffer is reloaded two tiles on
    }
    if (!active || begin > qpos) continue;
    if (a.split) {
      store_partial(s, hd4, lane, a.partials + (int64_t(a.partial_offsets[token] + part) * a.n_heads + head) * (a.head_dim + 4));
    } else if (part == 0) {
      total = s;
    } else {
      fold(total, s);
    }
  }
  if (active && !a.split) store_output(total, hd4, lane, a.out + (int64_t(token) * a.n_heads + head) * a.head_dim);
}

// One warp per (token, head): folds the token's partitions in order.
template <int C>
__global__ void merge_kernel(AttentionArgs a) {
  const int token = blockIdx.x, head = blockIdx.y, lane = threadIdx.x, hd4 = a.head_dim / 4;
  const int n_parts = a.positions[token] / kPartition + 1;
  const int64_t row_floats = a.head_dim + 4;
  const float* rows = a.partials + int64_t(a.partial_offsets[token]) * a.n_heads * row_floats;
  Softmax<C> total = load_partial<C>(rows + head * row_floats, hd4, lane);
  for (int p = 1; p < n_parts; ++p) {
    fold(total, load_partial<C>(rows + (int64_t(p) * a.n_heads + head) * row_floats, hd4, lane));
  }
  store_output(total, hd4, lane, a.out + (int64_t(token) * a.n_heads + head) * a.head_dim);
}

template <int C>
void launch(const AttentionArgs& a, cudaStream_t stream) {
  const int warps = a.group * a.queries_per_item;
  const size_t shared = attention_shared_bytes(a.head_dim, warps);
  check(cudaFuncSetAttribute(attention_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)),
        "attention shared memory");
  attention_kernel<C><<<dim3(unsigned(a.n_items), unsigned(a.n_kv_heads)), unsigned(32 * warps), shared, stream>>>(a);
  check_launch("attention");
  if (a.split) {
    merge_kernel<C><<<dim3(unsigned(a.n_tokens), unsigned(a.n_heads)), 32, 0, stream>>>(a);
    check_launch("attention merge");
  }
}

}  // namespace

size_t attention_shared_bytes(int head_dim, int warps) {
  const size_t row4 = size_t(head_dim / 4 + 1);
  return sizeof(float4) * (4 * kTile * row4 + size_t(warps) * (head_dim / 4)) + sizeof(float) * size_t(warps) * kTile;
}

void attention(const AttentionArgs& args, cudaStream_t stream) {
  if (args.n_items == 0) return;
  if (args.head_dim <= 128) {
    launch<1>(args, stream);
  } else {
    launch<2>(args, stream);
  }
}

}  // namespace tidal::cuda
