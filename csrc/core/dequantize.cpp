#include "core/dequantize.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"

namespace tidal {

// Half <-> float follow F. Giesen's branch-light conversions
// (https://gist.github.com/rygorous/2156668), which are exact and let the FPU
// do the subnormal rounding in the default round-to-nearest-even mode.
float fp16_to_fp32(uint16_t h) {
  constexpr uint32_t kShiftedExp = 0x7c00u << 13;  // half exponent mask, moved to float position
  uint32_t bits = (h & 0x7fffu) << 13;
  const uint32_t exp = bits & kShiftedExp;
  bits += (127 - 15) << 23;  // rebias exponent
  if (exp == kShiftedExp) {
    bits += (128 - 16) << 23;  // inf/NaN: exponent to 255
  } else if (exp == 0) {
    // Subnormal half: renormalize by subtracting the implicit-one magic value.
    bits += 1u << 23;
    bits = std::bit_cast<uint32_t>(std::bit_cast<float>(bits) - std::bit_cast<float>(113u << 23));
  }
  return std::bit_cast<float>(bits | (static_cast<uint32_t>(h & 0x8000u) << 16));
}

uint16_t fp32_to_fp16(float f) {
  uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  bits &= 0x7fffffffu;
  if (bits >= 0x7f800000u) {
    // Inf stays inf; NaN keeps its top payload bits and is forced quiet.
    return sign | (bits > 0x7f800000u ? 0x7e00u | ((bits >> 13) & 0x3ffu) : 0x7c00u);
  }
  if (bits >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds past the largest half
  if (bits < 0x38800000u) {
    // Result is subnormal (or zero): adding 0.5 shifts the mantissa into the
    // low bits and the FPU rounds it to nearest even for us.
    constexpr uint32_t kDenormMagic = ((127 - 15) + (23 - 10) + 1) << 23;
    const float sum = std::bit_cast<float>(bits) + std::bit_cast<float>(kDenormMagic);
    return sign | static_cast<uint16_t>(std::bit_cast<uint32_t>(sum) - kDenormMagic);
  }
  const uint32_t mant_odd = (bits >> 13) & 1u;
  bits += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + mant_odd;  // rebias and round
  return sign | static_cast<uint16_t>(bits >> 13);
}

float bf16_to_fp32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t fp32_to_bf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

namespace {

constexpr int kQK = 32;  // elements per block of every quantized type

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

void check_length(DType type, int64_t n) {
  if (n < 0 || n % dtype_block_elems(type) != 0) {
    throw Error(ErrorCode::kInvalidArgument, "row of " + std::to_string(n) + " elements is not a whole number of " +
                                                 std::string(dtype_name(type)) + " blocks");
  }
}

// The integer formats keep their scales beside the matrix (Weight::scales),
// which a row's bytes alone cannot reach.
[[noreturn]] void reject_integer_format(const char* what, DType type) {
  throw Error(ErrorCode::kInvalidArgument, std::string(what) + ": " + std::string(dtype_name(type)) +
                                               " rows need their scales: use dequantize_weight_row / quantize_matrix "
                                               "(model/quantize_matrix.h)");
}

// Writes a block's 32 4-bit codes: code j in the low nibble of byte j, code
// j+16 in the high nibble (ggml's order).
void store_nibbles(const uint8_t* codes, uint8_t* qs) {
  for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>(codes[j] | (codes[j + kQK / 2] << 4));
}

}  // namespace

void dequantize_row(DType type, const uint8_t* src, float* dst, int64_t n) {
  check_length(type, n);
  const int64_t nb = n / kQK;
  switch (type) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(load_u16(src + 2 * i));
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(load_u16(src + 2 * i));
      return;
    case DType::Q8_0:
      for (int64_t b = 0; b < nb; ++b, src += dtype_block_bytes(type), dst += kQK) {
        const float d = fp16_to_fp32(load_u16(src));
        const auto* qs = reinterpret_cast<const int8_t*>(src + 2);
        for (int j = 0; j < kQK; ++j) dst[j] = d * static_cast<float>(qs[j]);
      }
      return;
    case DType::Q4_0:
      for (int64_t b = 0; b < nb; ++b, src += dtype_block_bytes(type), dst += kQK) {
        const float d = fp16_to_fp32(load_u16(src));
        const uint8_t* qs = src + 2;
        for (int j = 0; j < kQK / 2; ++j) {
          dst[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
          dst[j + kQK / 2] = d * static_cast<float>((qs[j] >> 4) - 8);
        }
      }
      return;
    case DType::Q4_1:
      for (int64_t b = 0; b < nb; ++b, src += dtype_block_bytes(type), dst += kQK) {
        const float d = fp16_to_fp32(load_u16(src));
        const float m = fp16_to_fp32(load_u16(src + 2));
        const uint8_t* qs = src + 4;
        for (int j = 0; j < kQK / 2; ++j) {
          dst[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
          dst[j + kQK / 2] = d * static_cast<float>(qs[j] >> 4) + m;
        }
      }
      return;    case DType::I8:
    case DType::I8_G32:
    case DType::I4_G32:
    case DType::I4_G64:
    case DType::I4_G128:
    case DType::W8A16_G32:
    case DType::W4A16_G32:
    case DType::W4A16_G128: reject_integer_format("dequantize_row", type);
  }
}

void quantize_row(DType type, const float* src, uint8_t* dst, int64_t n) {
  check_length(type, n);
  const int64_t nb = n / kQK;
  switch (type) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) store_u16(dst + 2 * i, fp32_to_fp16(src[i]));
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) store_u16(dst + 2 * i, fp32_to_bf16(src[i]));
      return;
    case DType::Q8_0:
      for (int64_t b = 0; b < nb; ++b, src += kQK, dst += dtype_block_bytes(type)) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(src[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(dst, fp32_to_fp16(d));
        auto* qs = reinterpret_cast<int8_t*>(dst + 2);
        for (int j = 0; j < kQK; ++j) qs[j] = static_cast<int8_t>(std::round(src[j] * id));
      }
      return;
    case DType::Q4_0:
      for (int64_t b = 0; b < nb; ++b, src += kQK, dst += dtype_block_bytes(type)) {
        // The scale is signed so the largest-magnitude value lands exactly on
        // code 0 (-8), using the asymmetric end of the [-8, 7] range.
        float amax = 0.0f;
        float max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
          if (amax < std::fabs(src[j])) {
            amax = std::fabs(src[j]);
            max = src[j];
          }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(dst, fp32_to_fp16(d));
        uint8_t codes[kQK];
        for (int j = 0; j < kQK; ++j) {
          codes[j] = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(src[j] * id + 8.5f)));
        }
        store_nibbles(codes, dst + 2);
      }
      return;
    case DType::Q4_1:
      for (int64_t b = 0; b < nb; ++b, src += kQK, dst += dtype_block_bytes(type)) {
        float min = FLT_MAX;
        float max = -FLT_MAX;
        for (int j = 0; j < kQK; ++j) {
          min = std::min(min, src[j]);
          max = std::max(max, src[j]);
        }
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(dst, fp32_to_fp16(d));
        store_u16(dst + 2, fp32_to_fp16(min));
        uint8_t codes[kQK];
        for (int j = 0; j < kQK; ++j) {
          codes[j] = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>((src[j] - min) * id + 0.5f)));
        }
        store_nibbles(codes, dst + 4);
      }
      return;    case DType::I8:
    case DType::I8_G32:
    case DType::I4_G32:
    case DType::I4_G64:
    case DType::I4_G128:
    case DType::W8A16_G32:
    case DType::W4A16_G32:
    case DType::W4A16_G128: reject_integer_format("quantize_row", type);
  }
}

}  // namespace tidal
