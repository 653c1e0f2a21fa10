// Hands out KV blocks to sequences: reference counts, copy-on-write forks, and
// prefix caching. A full block is looked up by hash(key, parent block's hash,
// its tokens); when its last user frees it, it stays cached (evictable, LRU)
// and a later request with the same prefix takes it back instead of
// recomputing. A hit is trusted only after checking that the cached block
// holds the same tokens and follows the very block the request matched
// before it, so a hash collision -- even a crafted one -- is a miss, never
// another prompt's KV. The key is random per process, and every engine
// (model, variant, configuration) has its own manager. Knows nothing about
// models or tensors.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tidal {

// The physical blocks of one sequence, in position order, plus the hashes of
// its leading full blocks that are registered in the prefix cache.
struct BlockTable {
  std::vector<int32_t> blocks;
  std::vector<uint64_t> hashes;  // hashes[i] for blocks[i], i < hashes.size()
};

struct BlockCopy {
  int32_t src;
  int32_t dst;
};

struct PrefixCacheStats {
  uint64_t queries = 0;  // prompt tokens looked up
  uint64_t hits = 0;     // of those, found cached
};

// hash(key, parent, tokens) of a full block; never 0 (0 marks "not cached").
using BlockHash = uint64_t (*)(uint64_t key, uint64_t parent, std::span<const int32_t> tokens);
uint64_t keyed_block_hash(uint64_t key, uint64_t parent, std::span<const int32_t> tokens);

class BlockManager {
 public:
  // `hash` is replaceable so that tests can force collisions.
  BlockManager(int num_blocks, int block_size, bool enable_prefix_caching, BlockHash hash = keyed_block_hash);

  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }
  // Blocks that allocate() can hand out now: never-used, freed, or cached-but-unreferenced.
  int num_free_blocks() const;
  // Blocks referenced by at least one sequence.
  int num_used_blocks() const { return num_blocks_ - num_free_blocks(); }
  double usage() const { return double(num_used_blocks()) / num_blocks_; }
  bool prefix_caching() const { return prefix_caching_; }
  PrefixCacheStats prefix_stats() const { return stats_; }

  // Looks up the longest run of cached full blocks at the start of `tokens`,
  // using at most `max_blocks` blocks. Each hit is appended to `table` with a
  // reference taken. Returns the number of tokens covered. Counts queries/hits.
  int match_prefix(std::span<const int32_t> tokens, int max_blocks, BlockTable* table);

  // Makes `table` able to hold `num_computed + num_new` tokens, about to write
  // positions [num_computed, num_computed + num_new). A shared block in that
  // range is replaced by a private copy (recorded in `copies`). Returns false,
  // changing nothing, when there are not enough free blocks.
  bool allocate_slots(BlockTable* table, int num_computed, int num_new, std::vector<BlockCopy>* copies);

  // Number of blocks allocate_slots would need to take from the free pool.
  int blocks_needed(const BlockTable& table, int num_computed, int num_new) const;

  // Registers every full block of `table` whose tokens are all computed
  // (`num_computed` of `tokens`) in the prefix cache.
  void cache_full_blocks(BlockTable* table, std::span<const int32_t> tokens, int num_computed);

  // Shares every block of `parent` with `child` (reference counts go up).
  void fork(const BlockTable& parent, BlockTable* child);

  // Drops the table's references; blocks nobody uses become free (cached
  // ones stay findable until evicted).
  void free(BlockTable* table);

  int ref_count(int32_t block) const { return ref_[block]; }

 private:
  int32_t take_free_block();
  void release(int32_t block);
  // Whether cached block `b` holds `tokens` computed right after block
  // `parent_block` (as it is now: same generation).
  bool holds(int32_t b, std::span<const int32_t> tokens, int32_t parent_block) const;
  // The block a prefix lookup finds for position `i` of `table` (whose
  // position i-1 is `parent_block`): its own block if cached, an equal
  // cached one computed beside it, else its own.
  int32_t canonical(const BlockTable& table, std::span<const int32_t> tokens, int i, int32_t parent_block) const;

  int num_blocks_;
  int block_size_;
  bool prefix_caching_;
  std::vector<int> ref_;
  std::vector<uint64_t> block_hash_;       // 0 = not cached
  std::vector<int32_t> never_cached_free_; // free blocks without a hash (stack)
  std::list<int32_t> evictable_;           // free blocks with a hash, LRU first
  std::vector<std::list<int32_t>::iterator> evictable_pos_;
  std::vector<bool> in_evictable_;
  std::unordered_map<uint64_t, int32_t> cached_;  // hash -> block
  // What a cached block was computed from, checked on every hit: its tokens,
  // and the block before it in the sequence that cached it (-1: none) with
  // that block's generation then. A block's generation goes up each time it
  // is handed out anew, so a parent reused for other tokens breaks the chain.
  std::vector<std::vector<int32_t>> cached_tokens_;
  std::vector<std::pair<int32_t, uint64_t>> cached_parent_;
  std::vector<uint64_t> generation_;
  BlockHash hash_;
  uint64_t key_;
  PrefixCacheStats stats_;
};

}  // namespace tidal
