// Measured limits of the machine the CPU backend runs on, which the offline
// benchmark compares decode (bandwidth bound) and prefill (compute bound)
// against. Each takes a few hundred milliseconds and uses every pool thread.
#pragma once

#include "core/thread_pool.h"

namespace tidal {

// Best-of-several read bandwidth in GB/s (1e9 bytes/s) of all threads
// summing disjoint parts of a buffer far larger than the last-level cache.
double measure_read_bandwidth_gbs(ThreadPool& pool);

// Peak F32 rate in GFLOP/s (an FMA counts 2) of all threads running a loop
// of independent vector FMAs on registers: the arithmetic ceiling, with no
// loads, that a GEMM can at best approach.
double measure_f32_gemm_gflops(ThreadPool& pool);

}  // namespace tidal
