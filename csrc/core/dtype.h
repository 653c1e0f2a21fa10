// Element types of weights and activations, and the GGUF block formats we
// read natively. Quantized types store rows as a sequence of fixed blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tidal {

enum class DType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_1 };

// Number of elements per block (1 for plain types).
constexpr int dtype_block_elems(DType t) {
  switch (t) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1: return 32;
    default: return 1;
  }
}

// Bytes per block.
constexpr int dtype_block_bytes(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::Q8_0: return 2 + 32;      // f16 scale d, 32 x int8
    case DType::Q4_0: return 2 + 16;      // f16 scale d, 32 x 4-bit (q-8)
    case DType::Q4_1: return 2 + 2 + 16;  // f16 scale d, f16 min m, 32 x 4-bit
  }
  return 0;
}

// Bytes taken by a row of `n` elements; `n` must be a multiple of the block size.
constexpr size_t dtype_row_bytes(DType t, int64_t n) {
  return static_cast<size_t>(n / dtype_block_elems(t)) * static_cast<size_t>(dtype_block_bytes(t));
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::Q8_0: return "q8_0";
    case DType::Q4_0: return "q4_0";
    case DType::Q4_1: return "q4_1";
  }
  return "?";
}

}  // namespace tidal
