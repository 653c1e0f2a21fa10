// Rotating a model's weights so that its activations lose their outlier
// channels before integer quantization (the computational invariance of
// QuaRot / SpinQuant, without calibration data). The rotated model computes
// the same function as its base in exact arithmetic:
//
//   - the RMSNorm weights are folded into the matrices that read the norms'
//     outputs (q, k, v; gate, up; the LM head), leaving norms of ones, so
//     that the residual stream may be rotated: RMSNorm commutes with any
//     orthogonal map once its weight is 1;
//   - the residual stream is multiplied by an orthogonal Q: the embedding
//     and every matrix reading the stream become W Q, the two writing to it
//     (attention output, w_down) Q^T W. The LM head is untied from the
//     embedding, since one carries the final norm's weight and the other
//     does not;
//   - each head's values are rotated by a Hadamard matrix (v's rows, o's
//     columns), which attention passes through unchanged;
//   - the FFN activation silu(gate) * up, which no offline map can reach,
//     is rotated at run time by a block Hadamard transform
//     (ModelConfig::ffn_hadamard_block, Backend::hadamard) matched by
//     w_down's columns.
//
// Q = D (R_m ⊗ H_p) for d = m p, p the largest power of two dividing d (at
// most 256): D random signs, H_p the normalized Sylvester Hadamard matrix,
// R_m a random orthogonal m x m matrix; all drawn from a seeded mt19937_64,
// so a seed names one rotation on every platform.
#pragma once

#include <cstdint>

#include "model/model.h"

namespace tidal {

// The rotated copy of `base`, every matrix F32 (base's matrices may be any
// type; they are dequantized first). Owns its storage.
Model rotate_model(const Model& base, uint64_t seed);

// The width of the FFN activation's Hadamard blocks rotate_model picks for
// a hidden width: the largest power of two dividing it, at most 512.
int ffn_hadamard_block_for(int hidden_dim);

}  // namespace tidal
