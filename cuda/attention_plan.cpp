#include "cuda/attention_plan.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace tidal::cuda {

namespace {

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, "attention: " + message); }

void validate(const AttentionMeta& meta, const KvCacheShape& shape, int n_heads) {
  if (shape.n_kv_heads <= 0 || n_heads % shape.n_kv_heads != 0) {
    invalid(std::to_string(n_heads) + " query heads over " + std::to_string(shape.n_kv_heads) + " KV heads");
  }
  if (n_heads / shape.n_kv_heads > 32) invalid("more than 32 query heads per KV head");
  if (shape.head_dim % 4 != 0 || shape.head_dim > 256) {
    invalid("head_dim " + std::to_string(shape.head_dim) + " is not a multiple of 4 up to 256");
  }
  for (int t = 0; t < meta.n_tokens; ++t) {
    const int32_t seq = meta.seq_index[t], pos = meta.positions[t];
    if (seq < 0 || size_t(seq) >= meta.block_tables.size()) invalid("token " + std::to_string(t) + " has no block table");
    if (pos < 0 || int64_t(pos) / shape.block_size >= int64_t(meta.block_tables[size_t(seq)].size())) {
      invalid("token " + std::to_string(t) + " at position " + std::to_string(pos) + " is past its block table");
    }
  }
  for (const auto& table : meta.block_tables) {
    for (int32_t b : table) {
      if (b < 0 || b >= shape.num_blocks) invalid("block " + std::to_string(b) + " outside the pool");
    }
  }
}

// Maximal runs of batch tokens of one sequence at consecutive positions, cut
// to at most `limit` tokens.
std::vector<AttentionItem> runs(const AttentionMeta& meta, int limit) {
  std::vector<AttentionItem> out;
  for (int t = 0; t < meta.n_tokens; ++t) {
    AttentionItem* last = out.empty() ? nullptr : &out.back();
    const bool extends = last != nullptr && last->n_queries < limit && meta.seq_index[t] == last->seq &&
                         meta.positions[t] == meta.positions[t - 1] + 1;
    if (extends) {
      ++last->n_queries;
    } else {
      out.push_back({t, 1, meta.seq_index[t], 0, 0});
    }
  }
  return out;
}

int partitions_of(int32_t position) { return position / kPartition + 1; }

}  // namespace

AttentionPlan plan_attention(const AttentionMeta& meta, const KvCacheShape& shape, int n_heads, AttentionSplit mode,
                             int sm_count, size_t max_partial_bytes) {
  validate(meta, shape, n_heads);
  AttentionPlan plan;
  plan.group = n_heads / shape.n_kv_heads;
  plan.queries_per_item = queries_per_item(plan.group);
  std::vector<AttentionItem> run_list = runs(meta, plan.queries_per_item);

  int64_t split_items = 0;
  for (AttentionItem& r : run_list) {
    r.part_end = partitions_of(meta.positions[r.first_token + r.n_queries - 1]);
    split_items += r.part_end;
  }
  for (int t = 0; t < meta.n_tokens; ++t) plan.partial_rows += partitions_of(meta.positions[t]);
  const size_t partial_bytes = size_t(plan.partial_rows) * n_heads * (shape.head_dim + 4) * sizeof(float);
  switch (mode) {
    case AttentionSplit::kAlways: plan.split = true; break;
    case AttentionSplit::kNever: plan.split = false; break;
    case AttentionSplit::kAuto:
      plan.split = int64_t(run_list.size()) * shape.n_kv_heads < 2 * int64_t(sm_count) &&
                   split_items > int64_t(run_list.size()) && partial_bytes <= max_partial_bytes;
      break;
  }
  if (!plan.split) plan.partial_rows = 0;

  std::vector<AttentionItem> items;
  for (const AttentionItem& r : run_list) {
    if (!plan.split) {
      items.push_back(r);
      continue;
    }
    for (int p = 0; p < r.part_end; ++p) items.push_back({r.first_token, r.n_queries, r.seq, p, p + 1});
  }
  plan.n_items = int(items.size());

  for (const auto& table : meta.block_tables) plan.table_stride = std::max(plan.table_stride, int(table.size()));
  std::vector<int32_t>& packed = plan.packed;
  packed.assign(meta.block_tables.size() * size_t(plan.table_stride), 0);
  for (size_t s = 0; s < meta.block_tables.size(); ++s) {
    std::copy(meta.block_tables[s].begin(), meta.block_tables[s].end(), packed.begin() + long(s * plan.table_stride));
  }
  plan.positions_at = packed.size();
  packed.insert(packed.end(), meta.positions, meta.positions + meta.n_tokens);
  plan.items_at = packed.size();
  for (const AttentionItem& i : items) {
    packed.insert(packed.end(), {i.first_token, i.n_queries, i.seq, i.part_begin, i.part_end});
  }
  plan.partial_offsets_at = packed.size();
  if (plan.split) {
    int32_t offset = 0;
    for (int t = 0; t < meta.n_tokens; ++t) {
      packed.push_back(offset);
      offset += partitions_of(meta.positions[t]);
    }
  }
  return plan;
}

}  // namespace tidal::cuda
