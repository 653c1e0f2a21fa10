// The CPU matmul: y[t][r] = dot(x[t], W[r]) for every weight type, each dot
// product in the order of cpu/dot_kernels.h, or for the integer formats of
// cpu/int_kernels.h (activations quantized to int8 per token first).
#pragma once

#include <vector>

#include "core/thread_pool.h"
#include "cpu/scratch.h"
#include "model/weight.h"

namespace tidal::cpu {

// scratch holds one buffer per pool thread (for dequantized weight panels);
// int8_x receives the activations quantized for integer weights, which all
// threads then read.
void matmul(ThreadPool& pool, std::vector<ScratchBuffer>& scratch, ScratchBuffer& int8_x, const Weight& w,
            const float* x, int n_tokens, float* y);

}  // namespace tidal::cpu
