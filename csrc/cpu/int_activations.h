// Activations quantized for the integer matmul kernels (W8A8 for I8 and
// I8_G32 weights, W4A8 for I4_G*): each token's row is scaled by
// scale = max|x| / 127 and rounded to int8, q = round(x / scale) with ties
// away from zero, clamped to +-127 (the weight quantizer's rule; an
// all-zero row gets scale 0 and codes 0). Rows are zero-padded to the
// weight's padded length, so the kernels never see a ragged vector.
// For I8_G32 the same rule applies to each block of kActivationBlock
// elements with its own scale instead of the whole row: one outlier
// channel then coarsens only its block, not the token.
//
// The codes are laid out the way the kernels of this build read them:
//   - I8, I8_G32, and every format in the scalar build: element k at byte k.
//   - I4 in the SIMD builds: chunks of kI4Chunk elements (the last may be
//     half a chunk, zero-filled to a whole one). Within chunk c, byte i of
//     the first half is element 2i of the chunk and byte i of the second
//     half element 2i+1: the even and odd elements, which line up with the
//     low and high nibbles of the packed weight bytes (element 2i of a row
//     is the low nibble of byte i), so the kernels split a load of weight
//     bytes into two nibble vectors and never interleave them.
// Next to the codes each token keeps what the kernels would otherwise
// recompute for every row: for I8 on AVX-512, the sum of its codes (the
// kernel's offset correction; 0 in other builds, whose kernels need none)
// and, for I4 in the SIMD builds, -8 times the sum of each 32-bit lane's 8
// codes (the offset correction of every lane). I8_G32 keeps its block
// scales instead of a token scale and sum, and on AVX-512 -128 times the
// sum of each 32-bit lane's 4 codes (the lane's offset correction: its
// kernel, like I8's, multiplies the unsigned weight codes).
//
// W8A16_G32 and W4A16_G* weights take int16 activations instead: one scale
// max|x| / 32767 per token and codes clamped to +-32767, by the same
// rounding rule, so a token's outlier channels leave the others thousands
// of levels. The codes are int16, in element order in the scalar build; in
// the SIMD builds each chunk of kA16Chunk elements is reordered so that a
// 32-code vector holds 16 elements of each of the chunk's two halves (two
// groups of 32, whose scales then share one vector):
//   - W4A16: the chunk's 32 even elements, then its 32 odd ones, which are
//     the low and high nibbles of its 32 weight bytes;
//   - W8A16: elements 0-15, 32-47, 16-31, 48-63, which two 16-byte pieces
//     of the weight row each give.
// Each token keeps the exact sum of its codes in every weight group, as
// floats zero-padded to a multiple of 16 groups: the kernels' offset term
// (sum over groups of offset * that sum).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "cpu/simd.h"

namespace tidal::cpu {

#if defined(TIDAL_CPU_AVX512)
constexpr int64_t kI4Chunk = 128;  // one 64-byte load of packed weights
#elif defined(TIDAL_CPU_AVX2)
constexpr int64_t kI4Chunk = 64;  // one 32-byte load of packed weights
#endif

// Elements per scale of I8_G32 activations: the weights' group, so a
// group's integer dot product has one weight and one activation scale.
constexpr int64_t kActivationBlock = 32;

// Largest int16 activation code (W8A16_G32, W4A16_G*), and the elements of
// the chunks their SIMD layout reorders (kIntRowAlign: rows are whole chunks).
constexpr int32_t kA16CodeMax = 32767;
constexpr int64_t kA16Chunk = 64;
// The group sums of int16 activations are padded to a multiple of this many.
constexpr int64_t kGroupSumAlign = 16;

// Where each part of a token's quantized row sits: tokens are `stride`
// bytes apart (a multiple of 64, so every token starts a cache line), and
// within a token come the codes, the lane corrections, the block scales,
// the scale and the code sum (the last two for the per-token formats only).
struct ActivationLayout {
  size_t code_bytes = 0;
  size_t correction_bytes = 0;   // 0 unless I4 in a SIMD build or I8_G32 on AVX-512
  size_t block_scale_bytes = 0;  // 0 unless I8_G32
  size_t group_sum_bytes = 0;    // 0 unless W8A16_G32 or W4A16_G*
  size_t stride = 0;
};

ActivationLayout activation_layout(DType weight_type, int64_t cols);

// Quantizes tokens [t0, t1) of x (rows of `cols` floats) into their places
// in `buffer` (which holds stride bytes per token, 64-byte aligned).
void quantize_activations(DType weight_type, const ActivationLayout& layout, const float* x, int64_t cols, int64_t t0,
                          int64_t t1, uint8_t* buffer);

// The kernels' read-only view of a quantized batch.
struct QuantizedActivations {
  ActivationLayout layout;
  const uint8_t* data = nullptr;

  const uint8_t* token(int64_t t) const { return data + size_t(t) * layout.stride; }
  const int8_t* codes(int64_t t) const { return reinterpret_cast<const int8_t*>(token(t)); }
  const int16_t* codes16(int64_t t) const { return reinterpret_cast<const int16_t*>(token(t)); }
  const float* group_sums(int64_t t) const {
    return reinterpret_cast<const float*>(token(t) + layout.code_bytes + layout.correction_bytes +
                                          layout.block_scale_bytes);
  }
  const int32_t* neg_corrections(int64_t t) const {
    return reinterpret_cast<const int32_t*>(token(t) + layout.code_bytes);
  }
  const float* block_scales(int64_t t) const {
    return reinterpret_cast<const float*>(token(t) + layout.code_bytes + layout.correction_bytes);
  }
  float scale(int64_t t) const {
    float s;
    std::memcpy(&s, token_scale_at(t), sizeof(s));
    return s;
  }
  int32_t sum(int64_t t) const {
    int32_t s;
    std::memcpy(&s, token_scale_at(t) + sizeof(float), sizeof(s));
    return s;
  }

 private:
  const uint8_t* token_scale_at(int64_t t) const {
    return token(t) + layout.code_bytes + layout.correction_bytes + layout.block_scale_bytes + layout.group_sum_bytes;
  }
};

}  // namespace tidal::cpu
