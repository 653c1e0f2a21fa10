// How one attention call is cut into thread blocks; built on the host from
// the scheduler's AttentionMeta.
//
// The canonical reduction (what makes results batch-invariant, as the
// Backend requires): a query at position p attends to positions 0..p in
// partitions of kPartition positions. Each partition is reduced on its own,
// in tiles of kTile positions, to (max, sum, unnormalized output); the
// partitions are then folded into one in increasing order. Nothing in this
// depends on the other tokens of the batch, so the same query gives the same
// bits in a decode step, a prefill chunk or a whole prompt.
//
// A work item is a run of up to `queries_per_item` consecutive tokens of one
// sequence (consecutive positions), for one KV head, over a range of
// partitions; its thread block loads each K/V tile once for all those
// queries and all query heads that share the KV head (GQA). In split mode
// (flash-decoding) every item covers one partition and writes it to a
// scratch row, and a second kernel folds them; otherwise an item walks all
// its partitions and folds as it goes. Both fold the same values in the same
// order, so the mode changes speed, never bits.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"
#include "model/backend.h"

namespace tidal::cuda {

constexpr int kTile = 32;         // positions per tile: one per lane
constexpr int kPartition = 128;   // positions per partition (a multiple of kTile)

enum class AttentionSplit { kAuto, kAlways, kNever };

// One thread block's work; uploaded as 5 int32 each.
struct AttentionItem {
  int32_t first_token;  // index in the batch
  int32_t n_queries;    // consecutive tokens from first_token
  int32_t seq;          // index into the block tables
  int32_t part_begin;   // partitions [part_begin, part_end)
  int32_t part_end;
};
static_assert(sizeof(AttentionItem) == 5 * sizeof(int32_t));

struct AttentionPlan {
  int queries_per_item = 1;
  int group = 1;  // query heads per KV head
  bool split = false;
  int n_items = 0;
  int table_stride = 0;        // ints per sequence in the flattened block tables
  int64_t partial_rows = 0;    // split mode: sum over tokens of their partition counts
  // One upload: [block tables: n_seqs * table_stride][positions: n_tokens]
  // [items: 5 * n_items][partial row offsets: n_tokens (split mode)].
  std::vector<int32_t> packed;
  size_t positions_at = 0, items_at = 0, partial_offsets_at = 0;
};

// Validates the metadata (query heads a multiple of KV heads, every position
// covered by its block table, block ids inside the pool) and throws
// tidal::Error(kInvalidArgument) otherwise. `sm_count` and
// `max_partial_bytes` steer kAuto: split when unsplit items would leave
// streaming multiprocessors idle and the partial rows fit in the budget.
AttentionPlan plan_attention(const AttentionMeta& meta, const KvCacheShape& shape, int n_heads, AttentionSplit mode,
                             int sm_count, size_t max_partial_bytes);

// Queries per item for `group` heads per KV head: blocks of about 8 warps.
inline int queries_per_item(int group) { return group >= 8 ? 1 : 8 / group; }

}  // namespace tidal::cuda
