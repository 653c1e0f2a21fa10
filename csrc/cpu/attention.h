// Causal attention over the paged KV cache on the CPU.
#pragma once

#include <vector>

#include "core/thread_pool.h"
#include "cpu/scratch.h"
#include "kv/kv_cache.h"
#include "model/backend.h"

namespace tidal::cpu {

// Backend::attention, parallel over (token, head) pairs. scratch holds one
// buffer per pool thread (scores of one head).
void attention(ThreadPool& pool, std::vector<ScratchBuffer>& scratch, const KvCache& cache, int layer, const float* q,
               const AttentionMeta& meta, int n_heads, float* out);

}  // namespace tidal::cpu
