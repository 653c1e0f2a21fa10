// How weights are laid out in device memory.
//
// Plain types (F32, F16, BF16) are copied as they are. Quantized matrices are
// split into planes instead of GGUF's interleaved blocks, so that a block's
// codes start on a 16-byte boundary (one vector load) and neighbouring lanes
// of a warp read neighbouring bytes:
//
//   Q8_0: codes [rows][nb][32] int8,        then d [rows][nb] f16
//   Q4_0: codes [rows][nb][16] nibble pairs, then d [rows][nb] f16
//   Q4_1: codes [rows][nb][16] nibble pairs, then d [rows][nb] f16, then m [rows][nb] f16
//
// (nb = cols / 32; nibble byte j holds element j low and element j+16 high,
// as in GGUF.) A matrix takes exactly Weight::bytes() either way, so a device
// Weight is still {type, rows, cols, data} with data on the device; only
// row(r) must not be used on it.
//
// This header is plain C++ and also compiles under nvcc, so the element
// decoder below is the one the host tests check against dequantize_row.
#pragma once

#include <cstdint>

#include "core/dtype.h"

#if defined(__CUDACC__)
#define TIDAL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TIDAL_HOST_DEVICE inline
#endif

namespace tidal::cuda {

constexpr int kQuantBlock = 32;

TIDAL_HOST_DEVICE constexpr bool is_quantized(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_1;
}

// Bytes of codes per 32-element block.
TIDAL_HOST_DEVICE constexpr int code_bytes(DType t) { return t == DType::Q8_0 ? 32 : 16; }

// Where the planes of a quantized matrix start.
struct QuantPlanes {
  const uint8_t* codes;
  const uint16_t* d;
  const uint16_t* m;  // Q4_1 only
  int64_t nb;         // blocks per row
};

TIDAL_HOST_DEVICE QuantPlanes quant_planes(DType t, const uint8_t* data, int64_t rows, int64_t cols) {
  const int64_t nb = cols / kQuantBlock;
  const uint8_t* codes = data;
  const auto* d = reinterpret_cast<const uint16_t*>(data + rows * nb * code_bytes(t));
  return {codes, d, d + rows * nb, nb};
}

// Integer code of element k of row r (before scaling): q - 8 for Q4_0, q for
// Q4_1 and Q8_0.
TIDAL_HOST_DEVICE int quant_code(DType t, const QuantPlanes& p, int64_t r, int64_t k) {
  const int64_t b = k / kQuantBlock;
  const int j = int(k % kQuantBlock);
  const uint8_t* block = p.codes + (r * p.nb + b) * code_bytes(t);
  if (t == DType::Q8_0) return int(static_cast<int8_t>(block[j]));
  const int nibble = j < 16 ? (block[j] & 0x0f) : (block[j - 16] >> 4);
  return t == DType::Q4_0 ? nibble - 8 : nibble;
}

}  // namespace tidal::cuda
