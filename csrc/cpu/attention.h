// Causal attention over the paged KV cache on the CPU.
//
// Positions are split into fixed chunks (a function of the block size only),
// each reduced to a partial softmax (max, sum, unnormalized output) and the
// chunks then merged in order. A work item is one chunk of one KV head for a
// run of consecutive tokens of one sequence: every K/V block it reads serves
// all the run's tokens and all query heads sharing that KV head, and long
// contexts still split into enough items to keep every thread busy.
// A query row's result depends only on its own position and the cache,
// never on the run, the batch or the thread count.
//
// An F16 cache is read with the F32 path's reduction order, each half
// widened exactly in registers, so the result is that of F32 attention over
// the F16-rounded keys and values, bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/scratch.h"
#include "kv/kv_cache.h"
#include "model/backend.h"

namespace tidal::cpu {

// Buffers reused across calls, so steady-state attention does not allocate.
struct AttentionWorkspace {
  struct Run {
    int32_t first_token, n_tokens, first_pos;
  };
  struct Item {
    int32_t run, kv_head, chunk;
  };
  std::vector<Run> runs;
  std::vector<Item> items;
  ScratchBuffer partials;  // per (token, head, chunk): unnormalized output, max score, sum
};

// Backend::attention. scratch holds one buffer per pool thread.
void attention(ThreadPool& pool, std::vector<ScratchBuffer>& scratch, AttentionWorkspace& workspace,
               const KvCache& cache, int layer, const float* q, const AttentionMeta& meta, int n_heads, float* out);

}  // namespace tidal::cpu
