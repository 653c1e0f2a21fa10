// The CPU matmul: y[t][r] = dot(x[t], W[r]) for every weight type, each dot
// product in the order of cpu/dot_kernels.h.
#pragma once

#include <vector>

#include "core/thread_pool.h"
#include "cpu/scratch.h"
#include "model/weight.h"

namespace tidal::cpu {

// scratch holds one buffer per pool thread (for dequantized weight panels).
void matmul(ThreadPool& pool, std::vector<ScratchBuffer>& scratch, const Weight& w, const float* x, int n_tokens,
            float* y);

}  // namespace tidal::cpu
