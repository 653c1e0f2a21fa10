#include "cuda/matmul_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/device_layout.h"

namespace tidal::cuda {

namespace {

constexpr int kRows = 4;       // rows per warp
constexpr int kWarps = 4;      // warps per block
constexpr int kMaxTokens = 8;  // tokens per block

// Small integers become floats without the quarter-rate int-to-float unit:
// 2^23 + c has c in its low mantissa bits, so (bits | c) - 2^23 == c exactly.
constexpr uint32_t kMagic = 0x4b000000u;
constexpr float kMagicValue = 8388608.0f;

// Byte b of v as the float 2^23 + byte.
__device__ __forceinline__ float magic_byte(uint32_t v, int b) {
  return __int_as_float(int(__byte_perm(v, kMagic >> 16, uint32_t(b) | 0x5440u)));
}

__device__ __forceinline__ float half_bits(uint32_t bits) { return __half2float(__ushort_as_half(uint16_t(bits))); }

// The 8 weights of group g (elements 8g..8g+7) of one 32-value block.
template <DType kType>
__device__ __forceinline__ void decode_group(const uint4 (&codes)[2], int g, float d, float m, float (&w)[8]) {
  if constexpr (kType == DType::Q8_0) {
    const uint32_t words[8] = {codes[0].x, codes[0].y, codes[0].z, codes[0].w,
                               codes[1].x, codes[1].y, codes[1].z, codes[1].w};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t u = words[2 * g + h] ^ 0x80808080u;  // int8 q -> q + 128
#pragma unroll
      for (int b = 0; b < 4; ++b) w[4 * h + b] = d * (magic_byte(u, b) - (kMagicValue + 128.0f));
    }
  } else {
    // Nibble byte j holds element j (low) and j + 16 (high).
    const uint32_t lo = (g & 1) ? codes[0].z : codes[0].x, hi = (g & 1) ? codes[0].w : codes[0].y;
    const int shift = g >= 2 ? 4 : 0;
    const uint32_t parts[2] = {(lo >> shift) & 0x0f0f0f0fu, (hi >> shift) & 0x0f0f0f0fu};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        if constexpr (kType == DType::Q4_0) {
          w[4 * h + b] = d * (magic_byte(parts[h], b) - (kMagicValue + 8.0f));
        } else {
          w[4 * h + b] = fmaf(d, magic_byte(parts[h], b) - kMagicValue, m);
        }
      }
    }
  }
}

// Up to 8 consecutive values of a plain-typed row from element k0 (n valid).
template <DType kType>
__device__ __forceinline__ void load_plain(const uint8_t* row, int64_t k0, int n, bool vector, float (&w)[8]) {
  if constexpr (kType == DType::F32) {
    const float* p = reinterpret_cast<const float*>(row) + k0;
    if (vector && n == 8) {
      const float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p) + 1);
      w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = b.x, w[5] = b.y, w[6] = b.z, w[7] = b.w;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) w[e] = e < n ? __ldg(p + e) : 0.0f;
    }
  } else {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + k0;
    if (vector && n == 8) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if constexpr (kType == DType::F16) {
          w[2 * i] = half_bits(words[i] & 0xffffu);
          w[2 * i + 1] = half_bits(words[i] >> 16);
        } else {
          w[2 * i] = __uint_as_float(words[i] << 16);
          w[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
        }
      }
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const uint32_t bits = e < n ? __ldg(p + e) : 0u;
        w[e] = kType == DType::F16 ? half_bits(bits) : __uint_as_float(bits << 16);
      }
    }
  }
}

__device__ __forceinline__ void load_x(const float* p, int n, bool vector, float (&x)[8]) {
  if (vector && n == 8) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) x[e] = e < n ? __ldg(p + e) : 0.0f;
  }
}

// acc[i][t] += w[i][e] * x[t][e] for the n valid elements, in element order.
template <int kT>
__device__ __forceinline__ void accumulate(const float (&w)[kRows][8], const float* x_group, int64_t cols, int nt,
                                           int n, bool vector_x, float (&acc)[kRows][kT]) {
#pragma unroll
  for (int t = 0; t < kT; ++t) {
    if (t >= nt) break;
    float x[8];
    load_x(x_group + t * cols, n, vector_x, x);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      if (e >= n) break;
#pragma unroll
      for (int i = 0; i < kRows; ++i) acc[i][t] = fmaf(w[i][e], x[e], acc[i][t]);
    }
  }
}

template <DType kType, int kT>
__global__ void __launch_bounds__(kWarps * 32)
    matmul_rows_kernel(const uint8_t* __restrict__ weights, int64_t rows, int64_t cols, const float* __restrict__ x,
                       int n_tokens, bool vector_w, bool vector_x, float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t row0 = (int64_t(blockIdx.x) * kWarps + threadIdx.x / 32) * kRows;
  if (row0 >= rows) return;  // whole warps only; the kernel has no block barrier
  const int t0 = blockIdx.y * kT, nt = min(kT, n_tokens - t0);
  const float* xt = x + int64_t(t0) * cols;
  float acc[kRows][kT];
#pragma unroll
  for (int i = 0; i < kRows; ++i)
#pragma unroll
    for (int t = 0; t < kT; ++t) acc[i][t] = 0.0f;

  if constexpr (is_quantized(kType)) {
    const QuantPlanes planes = quant_planes(kType, weights, rows, cols);
    for (int64_t c = lane; c < planes.nb; c += 32) {
      uint4 codes[kRows][2];
      float d[kRows], m[kRows];
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
        const int64_t r = row0 + i < rows ? row0 + i : rows - 1;  // rows past the end repeat the last; never stored
        const int64_t block = r * planes.nb + c;
        const uint4* src = reinterpret_cast<const uint4*>(planes.codes + block * code_bytes(kType));
        codes[i][0] = __ldg(src);
        codes[i][1] = kType == DType::Q8_0 ? __ldg(src + 1) : make_uint4(0, 0, 0, 0);
        d[i] = half_bits(__ldg(planes.d + block));
        m[i] = kType == DType::Q4_1 ? half_bits(__ldg(planes.m + block)) : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < 4; ++g) {
        float w[kRows][8];
#pragma unroll
        for (int i = 0; i < kRows; ++i) decode_group<kType>(codes[i], g, d[i], m[i], w[i]);
        accumulate<kT>(w, xt + c * kQuantBlock + g * 8, cols, nt, 8, vector_x, acc);
      }
    }
  } else {
    const size_t row_bytes = dtype_row_bytes(kType, cols);
    const int64_t n_chunks = (cols + 7) / 8;
    for (int64_t c = lane; c < n_chunks; c += 32) {
      const int n = cols - c * 8 < 8 ? int(cols - c * 8) : 8;
      float w[kRows][8];
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
        const int64_t r = row0 + i < rows ? row0 + i : rows - 1;
        load_plain<kType>(weights + size_t(r) * row_bytes, c * 8, n, vector_w, w[i]);
      }
      accumulate<kT>(w, xt + c * 8, cols, nt, n, vector_x, acc);
    }
  }

  // Fixed tree over the lanes: lane 0 ends with ((l0 + l16) + (l8 + l24)) + ...
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
#pragma unroll
    for (int t = 0; t < kT; ++t) {
      float v = acc[i][t];
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
      if (lane == 0 && row0 + i < rows && t < nt) y[int64_t(t0 + t) * rows + row0 + i] = v;
    }
  }
}

template <DType kType>
void launch_rows(const Weight& w, const float* x, int n_tokens, float* y, cudaStream_t stream) {
  const int tokens_per_block = n_tokens >= kMaxTokens ? kMaxTokens : n_tokens >= 4 ? 4 : n_tokens >= 2 ? 2 : 1;
  const dim3 grid(unsigned((w.rows + kRows * kWarps - 1) / (kRows * kWarps)),
                  unsigned((n_tokens + tokens_per_block - 1) / tokens_per_block));
  const bool vector_x = reinterpret_cast<uintptr_t>(x) % 16 == 0 && w.cols % 4 == 0;
  // Plain rows are read 16 bytes at a time when every row starts aligned.
  constexpr int kPerVector = is_quantized(kType) ? 1 : 16 / dtype_block_bytes(kType);
  const bool vector_w = reinterpret_cast<uintptr_t>(w.data) % 16 == 0 && w.cols % kPerVector == 0;
  switch (tokens_per_block) {
#define TIDAL_LAUNCH(T)                                                                                          \
  case T:                                                                                                        \
    matmul_rows_kernel<kType, T><<<grid, kWarps * 32, 0, stream>>>(w.data, w.rows, w.cols, x, n_tokens, vector_w, \
                                                                   vector_x, y);                                 \
    break;
    TIDAL_LAUNCH(1)
    TIDAL_LAUNCH(2)
    TIDAL_LAUNCH(4)
    TIDAL_LAUNCH(8)
#undef TIDAL_LAUNCH
  }
}

__global__ void convert_to_half_kernel(const float* __restrict__ x, int64_t n, bool bf16, void* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (bf16) {
      static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(x[i]);
    } else {
      static_cast<__half*>(out)[i] = __float2half_rn(x[i]);
    }
  }
}

template <DType kType>
__global__ void dequantize_to_f16_kernel(const uint8_t* __restrict__ weights, int64_t rows, int64_t cols,
                                         __half* __restrict__ out) {
  const QuantPlanes planes = quant_planes(kType, weights, rows, cols);
  const int64_t blocks = rows * planes.nb;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    const uint4* src = reinterpret_cast<const uint4*>(planes.codes + b * code_bytes(kType));
    const uint4 codes[2] = {src[0], kType == DType::Q8_0 ? src[1] : make_uint4(0, 0, 0, 0)};
    const float d = half_bits(planes.d[b]), m = kType == DType::Q4_1 ? half_bits(planes.m[b]) : 0.0f;
    __half* dst = out + b * kQuantBlock;  // block b of the matrix is elements [32b, 32b + 32) of the row-major copy
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      float w[8];
      decode_group<kType>(codes, g, d, m, w);
#pragma unroll
      for (int e = 0; e < 8; ++e) dst[8 * g + e] = __float2half_rn(w[e]);
    }
  }
}

unsigned grid_for(int64_t n, int threads) { return unsigned(std::clamp<int64_t>((n + threads - 1) / threads, 1, 65535)); }

}  // namespace

void matmul_rows(const Weight& w, const float* x, int n_tokens, float* y, cudaStream_t stream) {
  if (n_tokens <= 0 || w.rows == 0) return;
  switch (w.type) {
    case DType::F32: launch_rows<DType::F32>(w, x, n_tokens, y, stream); break;
    case DType::F16: launch_rows<DType::F16>(w, x, n_tokens, y, stream); break;
    case DType::BF16: launch_rows<DType::BF16>(w, x, n_tokens, y, stream); break;
    case DType::Q8_0: launch_rows<DType::Q8_0>(w, x, n_tokens, y, stream); break;
    case DType::Q4_0: launch_rows<DType::Q4_0>(w, x, n_tokens, y, stream); break;
    case DType::Q4_1: launch_rows<DType::Q4_1>(w, x, n_tokens, y, stream); break;
    case DType::I8:
    case DType::I8_G32:
    case DType::I4_G32:
    case DType::I4_G64:
    case DType::I4_G128:
    case DType::W8A16_G32:
    case DType::W4A16_G32:
    case DType::W4A16_G128:
      throw Error(ErrorCode::kUnsupported, "matmul_rows: int8/int4 variants run on the CPU backend only");
  }
  check_launch("matmul_rows");
}

void convert_to_half(const float* x, int64_t n, bool bf16, void* out, cudaStream_t stream) {
  if (n <= 0) return;
  convert_to_half_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, n, bf16, out);
  check_launch("convert_to_half");
}

void dequantize_to_f16(const Weight& w, void* out, cudaStream_t stream) {
  const int64_t blocks = w.rows * (w.cols / kQuantBlock);
  if (blocks == 0) return;
  auto* dst = static_cast<__half*>(out);
  switch (w.type) {
    case DType::Q8_0: dequantize_to_f16_kernel<DType::Q8_0><<<grid_for(blocks, 256), 256, 0, stream>>>(w.data, w.rows, w.cols, dst); break;
    case DType::Q4_0: dequantize_to_f16_kernel<DType::Q4_0><<<grid_for(blocks, 256), 256, 0, stream>>>(w.data, w.rows, w.cols, dst); break;
    case DType::Q4_1: dequantize_to_f16_kernel<DType::Q4_1><<<grid_for(blocks, 256), 256, 0, stream>>>(w.data, w.rows, w.cols, dst); break;
    default: throw Error(ErrorCode::kInternal, "dequantize_to_f16: not a quantized type");
  }
  check_launch("dequantize_to_f16");
}

}  // namespace tidal::cuda
