// Element types of weights and activations: the GGUF block formats we read
// natively (rows are a sequence of fixed blocks), and tidal's own integer
// formats for derived variants (rows zero-padded to the kernel width, with
// scales held next to the matrix in Weight::scales).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tidal {

enum class DType : uint8_t {
  F32, F16, BF16, Q8_0, Q4_0, Q4_1,
  // Per-output-channel symmetric int8: each row holds round(w / s) + 128 as
  // uint8 (offset binary), one float scale per row in Weight::scales.
  I8,
  // Group-wise symmetric int8: each row holds round(w / s) + 128 as uint8
  // like I8, with one float scale per group of 32 consecutive elements:
  // Weight::scales is [rows][groups]. Its activations are quantized per
  // block of 32 too, which keeps outlier channels from coarsening a whole
  // token (cpu/int_activations.h).
  I8_G32,
  // Group-wise symmetric int4: each row holds round(w / s) + 8 in [1, 15],
  // two per byte (element 2i in the low nibble of byte i), one float scale
  // per group of G consecutive elements: Weight::scales is [rows][groups].
  I4_G32, I4_G64, I4_G128,
  // Group-wise asymmetric integers multiplied by int16 activations (W8A16,
  // W4A16): each group of G elements has a float scale d and offset m, and
  // code c in [0, 255] (one byte each) or [0, 15] (two per byte, element 2i
  // in the low nibble of byte i) decodes to m + d * c. Weight::scales is
  // [rows][2 * groups]: a row's G-group scales d, then its offsets m. With
  // d = (max - min) / (2^bits - 1) and m = min this repacks a GGUF Q4_1
  // group (its own min and step) exactly, so on a Q4_1 base the only
  // rounding left is the activations', which int16 makes negligible.
  W8A16_G32, W4A16_G32, W4A16_G128,
};

// The integer formats pad every row to a multiple of this many elements
// (and of the group size), so kernels never see a ragged vector; padded
// activations are zero, which makes the padded weights' values irrelevant.
constexpr int64_t kIntRowAlign = 64;

// Whether a format's matmul multiplies int16 activations (W8A16_G32, W4A16_G*).
constexpr bool dtype_is_a16(DType t) {
  return t == DType::W8A16_G32 || t == DType::W4A16_G32 || t == DType::W4A16_G128;
}

// Every integer format, in declaration order.
inline constexpr DType kIntDTypes[] = {DType::I8,        DType::I8_G32,    DType::I4_G32,    DType::I4_G64,
                                       DType::I4_G128,   DType::W8A16_G32, DType::W4A16_G32, DType::W4A16_G128};

constexpr bool dtype_is_int(DType t) {
  for (DType i : kIntDTypes) {
    if (i == t) return true;
  }
  return false;
}

// Elements per scale group of a group-wise integer format (I8_G32, I4_G*,
// W8A16_G32, W4A16_G*); 0 for every other type, I8 included (one scale per row).
constexpr int dtype_group_size(DType t) {
  switch (t) {
    case DType::I8_G32:
    case DType::I4_G32:
    case DType::W8A16_G32:
    case DType::W4A16_G32: return 32;
    case DType::I4_G64: return 64;
    case DType::I4_G128:
    case DType::W4A16_G128: return 128;
    default: return 0;
  }
}

// Elements a row of `n` occupies once padded (n itself for non-integer types).
constexpr int64_t dtype_padded_cols(DType t, int64_t n) {
  if (!dtype_is_int(t)) return n;
  const int64_t unit = dtype_group_size(t) > kIntRowAlign ? dtype_group_size(t) : kIntRowAlign;
  return (n + unit - 1) / unit * unit;
}

// Scales per row: 1 for I8, padded cols / G for the symmetric group-wise
// formats, twice that for the asymmetric ones (scales, then offsets), 0 otherwise.
constexpr int64_t dtype_scales_per_row(DType t, int64_t n) {
  if (t == DType::I8) return 1;
  if (dtype_is_a16(t)) return 2 * (dtype_padded_cols(t, n) / dtype_group_size(t));
  if (dtype_group_size(t) > 0) return dtype_padded_cols(t, n) / dtype_group_size(t);
  return 0;
}

// Whether a format is symmetric int4 (W4A8: I4_G*).
constexpr bool dtype_is_int4(DType t) { return t == DType::I4_G32 || t == DType::I4_G64 || t == DType::I4_G128; }

// Whether a format stores 4-bit codes, two per byte (I4_G*, W4A16_G*).
constexpr bool dtype_packs_nibbles(DType t) {
  return dtype_is_int4(t) || t == DType::W4A16_G32 || t == DType::W4A16_G128;
}

// Number of elements per block (1 for plain types).
constexpr int dtype_block_elems(DType t) {
  switch (t) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1: return 32;
    default: return 1;  // plain types, and the integer formats (any n, padded)
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
    case DType::I8:
    case DType::I8_G32:
    case DType::W8A16_G32: return 1;
    case DType::I4_G32:
    case DType::I4_G64:
    case DType::I4_G128:
    case DType::W4A16_G32:
    case DType::W4A16_G128: return 0;  // half a byte: see dtype_row_bytes
  }
  return 0;
}

// Bytes taken by a row of `n` elements; `n` must be a multiple of the block size.
// For the integer formats, any `n`: the row is padded (dtype_padded_cols).
constexpr size_t dtype_row_bytes(DType t, int64_t n) {
  if (t == DType::I8 || t == DType::I8_G32 || t == DType::W8A16_G32) return static_cast<size_t>(dtype_padded_cols(t, n));
  if (dtype_packs_nibbles(t)) return static_cast<size_t>(dtype_padded_cols(t, n) / 2);
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
    case DType::I8: return "int8";
    case DType::I8_G32: return "int8-g32";
    case DType::I4_G32: return "int4-g32";
    case DType::I4_G64: return "int4-g64";
    case DType::I4_G128: return "int4-g128";
    case DType::W8A16_G32: return "w8a16-g32";
    case DType::W4A16_G32: return "w4a16-g32";
    case DType::W4A16_G128: return "w4a16-g128";
  }
  return "?";
}

// The integer format whose dtype_name is `name`; nullopt for any other name.
constexpr std::optional<DType> int_dtype_named(std::string_view name) {
  for (DType t : kIntDTypes) {
    if (dtype_name(t) == name) return t;
  }
  return std::nullopt;
}

}  // namespace tidal
