#include "kv/block_manager.h"

#include <algorithm>
#include <random>

namespace tidal {

namespace {

// Parent hash of a sequence's first block. Any fixed non-zero value works.
constexpr uint64_t kRootHash = 0x6a09e667f3bcc908ull;
constexpr int32_t kNoParent = -1;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t random_key() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

}  // namespace

// Identifies a full block by its tokens and everything before it (through the
// parent's hash). FNV-1a over the tokens, seeded with the key and the parent
// and finished with splitmix64 so that nearby inputs spread over all 64
// bits. Not collision-proof, and need not be: hits are verified.
uint64_t keyed_block_hash(uint64_t key, uint64_t parent, std::span<const int32_t> tokens) {
  uint64_t h = splitmix64(parent ^ key);
  for (int32_t t : tokens) {
    h ^= uint32_t(t);
    h *= 0x100000001b3ull;
  }
  h = splitmix64(h);
  return h == 0 ? 1 : h;
}

BlockManager::BlockManager(int num_blocks, int block_size, bool enable_prefix_caching, BlockHash hash)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      prefix_caching_(enable_prefix_caching),
      ref_(num_blocks, 0),
      block_hash_(num_blocks, 0),
      evictable_pos_(num_blocks),
      in_evictable_(num_blocks, false),
      cached_tokens_(prefix_caching_ ? num_blocks : 0),
      cached_parent_(prefix_caching_ ? num_blocks : 0, {kNoParent, 0}),
      generation_(num_blocks, 0),
      hash_(hash),
      key_(random_key()) {
  // Stack: block 0 on top, so blocks are handed out in ascending order.
  never_cached_free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) never_cached_free_.push_back(b);
}

int BlockManager::num_free_blocks() const { return int(never_cached_free_.size() + evictable_.size()); }

int BlockManager::match_prefix(std::span<const int32_t> tokens, int max_blocks, BlockTable* table) {
  if (!prefix_caching_) return 0;
  // Hits are taken from the start of the sequence; a non-empty table would
  // misplace them.
  if (!table->blocks.empty()) return 0;
  const int full = std::min<int>(int(tokens.size()) / block_size_, max_blocks);
  uint64_t parent = kRootHash;
  int32_t parent_block = kNoParent;
  for (int i = 0; i < full; ++i) {
    const std::span<const int32_t> block_tokens = tokens.subspan(size_t(i) * block_size_, block_size_);
    const uint64_t h = hash_(key_, parent, block_tokens);
    auto it = cached_.find(h);
    if (it == cached_.end()) break;
    const int32_t b = it->second;
    // Same hash is not enough: same tokens after the same block instance.
    if (!holds(b, block_tokens, parent_block)) break;
    if (in_evictable_[b]) {
      evictable_.erase(evictable_pos_[b]);
      in_evictable_[b] = false;
    }
    ++ref_[b];
    table->blocks.push_back(b);
    table->hashes.push_back(h);
    parent = h;
    parent_block = b;
  }
  const int covered = int(table->blocks.size()) * block_size_;
  stats_.queries += tokens.size();
  stats_.hits += covered;
  return covered;
}

int BlockManager::blocks_needed(const BlockTable& table, int num_computed, int num_new) const {
  const int have = int(table.blocks.size());
  const int end = num_computed + num_new;
  const int total = (end + block_size_ - 1) / block_size_;
  int needed = std::max(0, total - have);
  if (num_new == 0) return needed;
  // Existing blocks about to be written must be private and uncached: a shared
  // block belongs to other sequences too, and a cached one may be handed to
  // future requests as it is.
  for (int i = num_computed / block_size_; i < std::min(have, total); ++i) {
    const int32_t b = table.blocks[i];
    if (ref_[b] > 1 || block_hash_[b] != 0) ++needed;
  }
  return needed;
}

bool BlockManager::allocate_slots(BlockTable* table, int num_computed, int num_new,
                                  std::vector<BlockCopy>* copies) {
  if (blocks_needed(*table, num_computed, num_new) > num_free_blocks()) return false;
  const int have = int(table->blocks.size());
  const int total = (num_computed + num_new + block_size_ - 1) / block_size_;
  if (num_new > 0) {
    for (int i = num_computed / block_size_; i < std::min(have, total); ++i) {
      const int32_t old = table->blocks[i];
      if (ref_[old] == 1 && block_hash_[old] == 0) continue;
      // Take before releasing so the old block's contents survive until the copy.
      const int32_t fresh = take_free_block();
      copies->push_back({old, fresh});
      release(old);
      table->blocks[i] = fresh;
    }
  }
  while (int(table->blocks.size()) < total) table->blocks.push_back(take_free_block());
  return true;
}

bool BlockManager::holds(int32_t b, std::span<const int32_t> tokens, int32_t parent_block) const {
  const std::pair<int32_t, uint64_t> parent = {parent_block,
                                               parent_block == kNoParent ? 0 : generation_[parent_block]};
  return cached_parent_[b] == parent &&
         std::equal(tokens.begin(), tokens.end(), cached_tokens_[b].begin(), cached_tokens_[b].end());
}

int32_t BlockManager::canonical(const BlockTable& table, std::span<const int32_t> tokens, int i,
                                int32_t parent_block) const {
  const int32_t b = table.blocks[size_t(i)];
  if (block_hash_[b] != 0) return b;
  // Computed beside an equal block that got cached first: children must
  // name that one, which later requests match.
  auto it = cached_.find(table.hashes[size_t(i)]);
  if (it != cached_.end() && holds(it->second, tokens.subspan(size_t(i) * block_size_, block_size_), parent_block)) {
    return it->second;
  }
  return b;
}

void BlockManager::cache_full_blocks(BlockTable* table, std::span<const int32_t> tokens, int num_computed) {
  if (!prefix_caching_) return;
  const int full = std::min<int>(num_computed / block_size_, int(table->blocks.size()));
  const int first = int(table->hashes.size());
  if (first >= full) return;
  // The cached block each earlier position stands for, as a later request
  // would match it.
  int32_t parent_block = kNoParent;
  for (int i = 0; i < first; ++i) parent_block = canonical(*table, tokens, i, parent_block);
  for (int i = first; i < full; ++i) {
    const uint64_t parent = i == 0 ? kRootHash : table->hashes[i - 1];
    const std::span<const int32_t> block_tokens = tokens.subspan(size_t(i) * block_size_, block_size_);
    const uint64_t h = hash_(key_, parent, block_tokens);
    table->hashes.push_back(h);
    const int32_t b = table->blocks[i];
    // Another block already holds this prefix (or, after a collision, another
    // one): keep that mapping; this block stays uncached and returns to the
    // plain free pool when released.
    if (block_hash_[b] == 0 && !cached_.count(h)) {
      block_hash_[b] = h;
      cached_[h] = b;
      cached_tokens_[b].assign(block_tokens.begin(), block_tokens.end());
      cached_parent_[b] = {parent_block, parent_block == kNoParent ? 0 : generation_[parent_block]};
    }
    parent_block = canonical(*table, tokens, i, parent_block);
  }
}

void BlockManager::fork(const BlockTable& parent, BlockTable* child) {
  free(child);
  child->blocks = parent.blocks;
  child->hashes = parent.hashes;
  for (int32_t b : child->blocks) ++ref_[b];
}

void BlockManager::free(BlockTable* table) {
  // Reverse order: the tail of a sequence is the least likely to be shared by
  // another prompt, so it should be evicted first.
  for (auto it = table->blocks.rbegin(); it != table->blocks.rend(); ++it) release(*it);
  table->blocks.clear();
  table->hashes.clear();
}

int32_t BlockManager::take_free_block() {
  int32_t b;
  if (!never_cached_free_.empty()) {
    b = never_cached_free_.back();
    never_cached_free_.pop_back();
  } else {
    b = evictable_.front();
    evictable_.pop_front();
    in_evictable_[b] = false;
    cached_.erase(block_hash_[b]);
    block_hash_[b] = 0;
  }
  ++generation_[b];  // new contents from here on
  ref_[b] = 1;
  return b;
}

void BlockManager::release(int32_t block) {
  if (--ref_[block] > 0) return;
  if (block_hash_[block] != 0) {
    evictable_pos_[block] = evictable_.insert(evictable_.end(), block);
    in_evictable_[block] = true;
  } else {
    never_cached_free_.push_back(block);
  }
}

}  // namespace tidal
