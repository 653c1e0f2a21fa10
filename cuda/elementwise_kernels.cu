#include "cuda/elementwise_kernels.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/device_layout.h"

namespace tidal::cuda {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) { return unsigned(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 1 << 16)); }

__device__ __forceinline__ float half_bits(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }

__global__ void embed_kernel(Weight table, const int32_t* __restrict__ ids, float* __restrict__ out) {
  const int t = blockIdx.x;
  const int64_t r = ids[t];
  float* dst = out + int64_t(t) * table.cols;
  for (int64_t k = threadIdx.x; k < table.cols; k += blockDim.x) {
    float v;
    switch (table.type) {
      case DType::F32: v = reinterpret_cast<const float*>(table.data)[r * table.cols + k]; break;
      case DType::F16: v = half_bits(reinterpret_cast<const uint16_t*>(table.data)[r * table.cols + k]); break;
      case DType::BF16:
        v = __uint_as_float(uint32_t(reinterpret_cast<const uint16_t*>(table.data)[r * table.cols + k]) << 16);
        break;
      default: {
        const QuantPlanes p = quant_planes(table.type, table.data, table.rows, table.cols);
        const int64_t block = r * p.nb + k / kQuantBlock;
        const float d = half_bits(p.d[block]), q = float(quant_code(table.type, p, r, k));
        v = table.type == DType::Q4_1 ? fmaf(d, q, half_bits(p.m[block])) : d * q;
      }
    }
    dst[k] = v;
  }
}

__global__ void rmsnorm_kernel(const float* x, const float* __restrict__ gamma, int dim, float eps, float* out) {
  __shared__ float warp_sums[kThreads / 32];
  const float* xr = x + int64_t(blockIdx.x) * dim;
  float* o = out + int64_t(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += kThreads) ss = fmaf(xr[i], xr[i], ss);
  for (int offset = 16; offset > 0; offset /= 2) ss += __shfl_down_sync(0xffffffffu, ss, offset);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    ss = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) ss += __shfl_down_sync(0xffffffffu, ss, offset);
    if (threadIdx.x == 0) warp_sums[0] = ss;
  }
  __syncthreads();
  const float scale = 1.0f / sqrtf(warp_sums[0] / float(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += kThreads) o[i] = xr[i] * scale * gamma[i];
}

// One thread per (token, pair): the angle's cos/sin once, applied to every head.
__global__ void rope_kernel(float* x, const int32_t* __restrict__ positions, int n_tokens, int n_heads, int head_dim,
                            float theta) {
  const int half = head_dim / 2;
  const int64_t id = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (id >= int64_t(n_tokens) * half) return;
  const int t = int(id / half), i = int(id % half);
  const double angle = double(positions[t]) * pow(double(theta), -2.0 * i / head_dim);
  double sn, cs;
  sincos(angle, &sn, &cs);
  const float c = float(cs), s = float(sn);
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + (int64_t(t) * n_heads + h) * head_dim + 2 * i;
    const float x0 = v[0], x1 = v[1];
    v[0] = fmaf(x0, c, -(x1 * s));
    v[1] = fmaf(x0, s, x1 * c);
  }
}

__global__ void silu_mul_kernel(float* gate, const float* __restrict__ up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// One thread block per Hadamard block of one row, staged in shared memory.
__global__ void hadamard_kernel(float* x, int width, int block, float scale) {
  extern __shared__ float v[];
  float* row = x + int64_t(blockIdx.x) * width + int64_t(blockIdx.y) * block;
  for (int i = threadIdx.x; i < block; i += blockDim.x) v[i] = row[i];
  __syncthreads();
  for (int h = 1; h < block; h *= 2) {
    for (int p = threadIdx.x; p < block / 2; p += blockDim.x) {
      const int i = (p / h) * 2 * h + p % h;
      const float a = v[i], b = v[i + h];
      v[i] = __fadd_rn(a, b);
      v[i + h] = __fsub_rn(a, b);
    }
    __syncthreads();
  }
  for (int i = threadIdx.x; i < block; i += blockDim.x) row[i] = __fmul_rn(v[i], scale);
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    x[i] = __fadd_rn(x[i], y[i]);
  }
}

__global__ void kv_write_kernel(float* __restrict__ keys, float* __restrict__ values, const float* __restrict__ k,
                                const float* __restrict__ v, const int32_t* __restrict__ slots, int n_kv_heads,
                                int head_dim, int block_size) {
  const int t = blockIdx.x;
  const int64_t slot = slots[t], block = slot / block_size, offset = slot % block_size;
  const int row = n_kv_heads * head_dim;
  for (int i = threadIdx.x; i < row; i += blockDim.x) {
    const int h = i / head_dim, d = i - h * head_dim;
    const int64_t dst = ((block * n_kv_heads + h) * block_size + offset) * head_dim + d;
    keys[dst] = k[int64_t(t) * row + i];
    values[dst] = v[int64_t(t) * row + i];
  }
}

}  // namespace

void embed(const Weight& table, const int32_t* ids, int n_tokens, float* out, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  embed_kernel<<<unsigned(n_tokens), kThreads, 0, stream>>>(table, ids, out);
  check_launch("embed");
}

void rmsnorm(const float* x, const float* gamma, int n_tokens, int dim, float eps, float* out, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  rmsnorm_kernel<<<unsigned(n_tokens), kThreads, 0, stream>>>(x, gamma, dim, eps, out);
  check_launch("rmsnorm");
}

void rope(float* x, const int32_t* positions, int n_tokens, int n_heads, int head_dim, float theta,
          cudaStream_t stream) {
  const int64_t pairs = int64_t(n_tokens) * (head_dim / 2);
  if (pairs <= 0) return;
  rope_kernel<<<unsigned((pairs + kThreads - 1) / kThreads), kThreads, 0, stream>>>(x, positions, n_tokens, n_heads,
                                                                                    head_dim, theta);
  check_launch("rope");
}

void silu_mul(float* gate, const float* up, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  silu_mul_kernel<<<blocks_for(n), kThreads, 0, stream>>>(gate, up, n);
  check_launch("silu_mul");
}

void add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, y, n);
  check_launch("add");
}

void hadamard(float* x, int64_t n_rows, int width, int block, cudaStream_t stream) {
  if (n_rows <= 0) return;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(block)));
  const dim3 grid(unsigned(n_rows), unsigned(width / block));
  hadamard_kernel<<<grid, unsigned(std::min(kThreads, std::max(1, block / 2))), size_t(block) * sizeof(float), stream>>>(
      x, width, block, scale);
  check_launch("hadamard");
}

void kv_write(float* keys, float* values, const float* k, const float* v, const int32_t* slots, int n_tokens,
              int n_kv_heads, int head_dim, int block_size, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  kv_write_kernel<<<unsigned(n_tokens), kThreads, 0, stream>>>(keys, values, k, v, slots, n_kv_heads, head_dim,
                                                               block_size);
  check_launch("kv_write");
}

}  // namespace tidal::cuda
