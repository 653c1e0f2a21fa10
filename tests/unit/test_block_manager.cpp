#include "kv/block_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <set>

namespace tidal {
namespace {

std::vector<int32_t> iota_tokens(int n, int32_t start = 0) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), start);
  return t;
}

TEST(BlockManager, AllocateAndFree) {
  BlockManager bm(8, 4, false);
  BlockTable t;
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate_slots(&t, 0, 10, &copies));
  EXPECT_EQ(t.blocks.size(), 3u);
  EXPECT_EQ(bm.num_free_blocks(), 5);
  EXPECT_EQ(bm.num_used_blocks(), 3);
  // Filling the last partial block needs nothing new; crossing it needs one.
  ASSERT_TRUE(bm.allocate_slots(&t, 10, 2, &copies));
  EXPECT_EQ(t.blocks.size(), 3u);
  ASSERT_TRUE(bm.allocate_slots(&t, 12, 1, &copies));
  EXPECT_EQ(t.blocks.size(), 4u);
  EXPECT_TRUE(copies.empty());
  std::set<int32_t> distinct(t.blocks.begin(), t.blocks.end());
  EXPECT_EQ(distinct.size(), 4u);
  for (int32_t b : t.blocks) EXPECT_EQ(bm.ref_count(b), 1);
  bm.free(&t);
  EXPECT_TRUE(t.blocks.empty());
  EXPECT_EQ(bm.num_free_blocks(), 8);
}

TEST(BlockManager, AllocationIsAllOrNothing) {
  BlockManager bm(4, 4, false);
  BlockTable a, b;
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate_slots(&a, 0, 8, &copies));
  EXPECT_EQ(bm.blocks_needed(b, 0, 12), 3);
  EXPECT_FALSE(bm.allocate_slots(&b, 0, 12, &copies));
  EXPECT_TRUE(b.blocks.empty());
  EXPECT_EQ(bm.num_free_blocks(), 2);
  // Growing `a` by three blocks fails too and leaves it as it was.
  EXPECT_FALSE(bm.allocate_slots(&a, 8, 12, &copies));
  EXPECT_EQ(a.blocks.size(), 2u);
  EXPECT_EQ(bm.num_free_blocks(), 2);
  ASSERT_TRUE(bm.allocate_slots(&b, 0, 8, &copies));
  EXPECT_EQ(bm.num_free_blocks(), 0);
  bm.free(&a);
  bm.free(&b);
  EXPECT_EQ(bm.num_free_blocks(), 4);
}

TEST(BlockManager, ForkSharesAndCopiesOnWrite) {
  BlockManager bm(16, 4, false);
  BlockTable parent, child;
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate_slots(&parent, 0, 10, &copies));  // 2 full blocks + 2 tokens
  bm.fork(parent, &child);
  EXPECT_EQ(child.blocks, parent.blocks);
  for (int32_t b : parent.blocks) EXPECT_EQ(bm.ref_count(b), 2);
  EXPECT_EQ(bm.num_free_blocks(), 13);

  // Parent appends token 10: its partial last block is copied once.
  EXPECT_EQ(bm.blocks_needed(parent, 10, 1), 1);
  ASSERT_TRUE(bm.allocate_slots(&parent, 10, 1, &copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].src, child.blocks[2]);
  EXPECT_EQ(copies[0].dst, parent.blocks[2]);
  EXPECT_NE(parent.blocks[2], child.blocks[2]);
  EXPECT_EQ(parent.blocks[0], child.blocks[0]);
  EXPECT_EQ(parent.blocks[1], child.blocks[1]);
  EXPECT_EQ(bm.ref_count(parent.blocks[0]), 2);
  EXPECT_EQ(bm.ref_count(parent.blocks[2]), 1);
  EXPECT_EQ(bm.ref_count(child.blocks[2]), 1);

  // The child now owns its last block alone: appending copies nothing.
  ASSERT_TRUE(bm.allocate_slots(&child, 10, 1, &copies));
  EXPECT_EQ(copies.size(), 1u);
  // Nor does the parent's next append.
  ASSERT_TRUE(bm.allocate_slots(&parent, 11, 1, &copies));
  EXPECT_EQ(copies.size(), 1u);
  // Crossing into a new block never copies the shared full ones.
  ASSERT_TRUE(bm.allocate_slots(&parent, 12, 1, &copies));
  ASSERT_TRUE(bm.allocate_slots(&child, 11, 2, &copies));
  EXPECT_EQ(copies.size(), 1u);
  EXPECT_EQ(bm.ref_count(parent.blocks[0]), 2);
  EXPECT_EQ(bm.ref_count(parent.blocks[1]), 2);

  bm.free(&parent);
  EXPECT_EQ(bm.ref_count(child.blocks[0]), 1);
  bm.free(&child);
  EXPECT_EQ(bm.num_free_blocks(), 16);
}

TEST(BlockManager, CopyOnWriteFailsCleanlyWithoutFreeBlocks) {
  BlockManager bm(2, 4, false);
  BlockTable parent, child;
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate_slots(&parent, 0, 6, &copies));
  bm.fork(parent, &child);
  EXPECT_EQ(bm.num_free_blocks(), 0);
  EXPECT_FALSE(bm.allocate_slots(&parent, 6, 1, &copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(parent.blocks, child.blocks);
  EXPECT_EQ(bm.ref_count(parent.blocks[1]), 2);
  bm.free(&child);
  ASSERT_TRUE(bm.allocate_slots(&parent, 6, 1, &copies));
  EXPECT_TRUE(copies.empty());  // sole owner again
  bm.free(&parent);
  EXPECT_EQ(bm.num_free_blocks(), 2);
}

// Runs a prompt through the manager the way the scheduler does: match, allocate
// the rest, mark it computed.
int admit(BlockManager& bm, BlockTable* t, const std::vector<int32_t>& tokens) {
  std::vector<BlockCopy> copies;
  const int max_blocks = (int(tokens.size()) - 1) / bm.block_size();
  const int hit = bm.match_prefix(tokens, max_blocks, t);
  EXPECT_TRUE(bm.allocate_slots(t, hit, int(tokens.size()) - hit, &copies));
  EXPECT_TRUE(copies.empty());
  bm.cache_full_blocks(t, tokens, int(tokens.size()));
  return hit;
}

TEST(BlockManager, PrefixCacheSharesAndSurvivesFree) {
  BlockManager bm(16, 4, true);
  std::vector<int32_t> a = iota_tokens(12);  // 3 full blocks
  a.push_back(100);
  a.push_back(101);
  std::vector<int32_t> b = iota_tokens(12);
  b.push_back(200);

  BlockTable ta, tb, tc;
  EXPECT_EQ(admit(bm, &ta, a), 0);
  EXPECT_EQ(ta.hashes.size(), 3u);
  EXPECT_EQ(admit(bm, &tb, b), 12);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ta.blocks[i], tb.blocks[i]);
    EXPECT_EQ(bm.ref_count(ta.blocks[i]), 2);
  }
  EXPECT_NE(ta.blocks[3], tb.blocks[3]);
  EXPECT_EQ(bm.prefix_stats().queries, 14u + 13u);
  EXPECT_EQ(bm.prefix_stats().hits, 12u);

  const std::vector<int32_t> shared(ta.blocks.begin(), ta.blocks.begin() + 3);
  bm.free(&ta);
  bm.free(&tb);
  EXPECT_EQ(bm.num_free_blocks(), 16);  // cached blocks count as free

  EXPECT_EQ(admit(bm, &tc, b), 12);
  EXPECT_EQ(std::vector<int32_t>(tc.blocks.begin(), tc.blocks.begin() + 3), shared);
  bm.free(&tc);
  EXPECT_EQ(bm.num_free_blocks(), 16);
}

TEST(BlockManager, MatchStopsAtFirstMissAndRespectsMaxBlocks) {
  BlockManager bm(16, 4, true);
  BlockTable t, u, v;
  std::vector<int32_t> tokens = iota_tokens(16);
  admit(bm, &t, tokens);  // all 4 blocks are full once computed, so all are cached
  EXPECT_EQ(t.hashes.size(), 4u);

  std::vector<int32_t> diverged = tokens;
  diverged[5] = 999;  // second block differs: only the first matches
  EXPECT_EQ(bm.match_prefix(diverged, 10, &u), 4);
  EXPECT_EQ(u.blocks.size(), 1u);
  EXPECT_EQ(bm.match_prefix(tokens, 2, &v), 8);
  bm.free(&t);
  bm.free(&u);
  bm.free(&v);
  EXPECT_EQ(bm.num_free_blocks(), 16);
}

TEST(BlockManager, SameTokensAtOtherPositionDoNotMatch) {
  // The hash chains through the parent: block [4..8) after [0..4) differs from
  // block [4..8) at the start of a sequence.
  BlockManager bm(8, 4, true);
  BlockTable t, u;
  admit(bm, &t, iota_tokens(9));
  EXPECT_EQ(bm.match_prefix(iota_tokens(9, 4), 2, &u), 0);
  bm.free(&t);
}

TEST(BlockManager, EvictionIsLruAndDropsHashes) {
  BlockManager bm(6, 4, true);
  std::vector<int32_t> old_prompt = iota_tokens(9, 1000);  // 2 cached blocks
  std::vector<int32_t> new_prompt = iota_tokens(9, 2000);
  BlockTable t1, t2;
  admit(bm, &t1, old_prompt);
  bm.free(&t1);  // 2 evictable + 1 plain free block
  admit(bm, &t2, new_prompt);
  bm.free(&t2);  // now 4 evictable, old ones least recently used
  EXPECT_EQ(bm.num_free_blocks(), 6);

  // Take every free block: plain ones first, then LRU: the old prompt goes.
  BlockTable filler;
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate_slots(&filler, 0, 4 * 4, &copies));
  BlockTable probe;
  EXPECT_EQ(bm.match_prefix(old_prompt, 2, &probe), 0);
  EXPECT_EQ(bm.match_prefix(new_prompt, 2, &probe), 8);
  bm.free(&probe);

  // The rest of the pool evicts the new prompt too.
  ASSERT_TRUE(bm.allocate_slots(&filler, 16, 8, &copies));
  EXPECT_EQ(bm.num_free_blocks(), 0);
  EXPECT_EQ(bm.match_prefix(new_prompt, 2, &probe), 0);
  bm.free(&filler);
  EXPECT_EQ(bm.num_free_blocks(), 6);
}

TEST(BlockManager, HitOnEvictableBlockProtectsItFromEviction) {
  BlockManager bm(4, 4, true);
  std::vector<int32_t> prompt = iota_tokens(9);
  BlockTable t, u, filler;
  std::vector<BlockCopy> copies;
  admit(bm, &t, prompt);
  bm.free(&t);
  EXPECT_EQ(bm.match_prefix(prompt, 2, &u), 8);
  EXPECT_EQ(bm.num_free_blocks(), 2);
  EXPECT_FALSE(bm.allocate_slots(&filler, 0, 12, &copies));
  ASSERT_TRUE(bm.allocate_slots(&filler, 0, 8, &copies));
  for (int32_t b : filler.blocks) EXPECT_EQ(std::count(u.blocks.begin(), u.blocks.end(), b), 0);
  bm.free(&u);
  bm.free(&filler);
}

TEST(BlockManager, DuplicateBlockKeepsExistingMapping) {
  // Two sequences computing the same prefix concurrently (neither saw the
  // other's blocks): the first registration wins and the duplicate block goes
  // back to the plain free pool.
  BlockManager bm(8, 4, true);
  std::vector<int32_t> prompt = iota_tokens(5);
  BlockTable a, b, probe;
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate_slots(&a, 0, 5, &copies));
  ASSERT_TRUE(bm.allocate_slots(&b, 0, 5, &copies));
  bm.cache_full_blocks(&a, prompt, 5);
  bm.cache_full_blocks(&b, prompt, 5);
  EXPECT_EQ(a.hashes, b.hashes);
  const int32_t winner = a.blocks[0];
  bm.free(&a);
  bm.free(&b);
  EXPECT_EQ(bm.match_prefix(prompt, 1, &probe), 4);
  EXPECT_EQ(probe.blocks[0], winner);
  bm.free(&probe);
  EXPECT_EQ(bm.num_free_blocks(), 8);
}

// Hashes that collide on purpose, as a crafted prompt would try to make
// them: every block hashes alike, or a block's hash ignores what came before.
uint64_t one_hash_for_all(uint64_t, uint64_t, std::span<const int32_t>) { return 7; }
uint64_t hash_ignoring_parent(uint64_t key, uint64_t, std::span<const int32_t> tokens) {
  return keyed_block_hash(key, 0, tokens);
}

TEST(BlockManager, ForcedCollisionOfABlockIsAMissNotAnotherPromptsKv) {
  BlockManager bm(16, 4, true, one_hash_for_all);
  const std::vector<int32_t> victim = iota_tokens(9);
  const std::vector<int32_t> attacker = iota_tokens(9, 100);
  BlockTable tv, ta;
  admit(bm, &tv, victim);
  EXPECT_EQ(admit(bm, &ta, attacker), 0);
  for (int32_t b : ta.blocks) EXPECT_EQ(std::count(tv.blocks.begin(), tv.blocks.end(), b), 0);
  bm.free(&ta);
  // The victim's own prefix still hits.
  BlockTable again;
  EXPECT_EQ(admit(bm, &again, victim), 4);  // one block: all hash alike, so only the first one is cached
  bm.free(&again);
  bm.free(&tv);
}

TEST(BlockManager, ForcedCollisionThroughTheParentIsAMiss) {
  // A cached block with the right tokens, but computed after other tokens:
  // matching it by its own tokens would hand over KV of another prefix.
  BlockManager bm(16, 4, true, hash_ignoring_parent);
  const std::vector<int32_t> first = {1, 2, 3, 4, 5, 6, 7, 8, 9};    // X Y
  const std::vector<int32_t> second = {9, 9, 9, 9, 5, 6, 7, 8, 9};   // X' Y
  BlockTable t1, t2, t3;
  admit(bm, &t1, first);
  bm.free(&t1);
  admit(bm, &t2, second);  // caches X'; Y's hash is taken by the first prompt's block
  bm.free(&t2);
  EXPECT_EQ(admit(bm, &t3, second), 4) << "X' hits, Y after X' must not take Y after X";
  bm.free(&t3);
}

TEST(BlockManager, ReusedParentBreaksTheChain) {
  // B computed X beside A's cached X, so B's cached Y names A's block as its
  // parent. A's block is then evicted and cached again for W: Y after W must
  // not find B's Y, computed after X.
  BlockManager bm(5, 4, true, hash_ignoring_parent);
  const std::vector<int32_t> a = {1, 2, 3, 4, 0};
  const std::vector<int32_t> b = {1, 2, 3, 4, 5, 6, 7, 8, 0};
  const std::vector<int32_t> w = {9, 9, 9, 9};
  BlockTable ta, tb, tz, tw, probe;
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate_slots(&ta, 0, 5, &copies));
  ASSERT_TRUE(bm.allocate_slots(&tb, 0, 9, &copies));
  bm.cache_full_blocks(&ta, a, 5);
  bm.cache_full_blocks(&tb, b, 9);
  const int32_t x_block = ta.blocks[0];
  bm.free(&ta);                                        // X's block is evictable now
  ASSERT_TRUE(bm.allocate_slots(&tz, 0, 1, &copies));  // takes the last never-cached block
  ASSERT_TRUE(bm.allocate_slots(&tw, 0, 4, &copies));  // evicts X's block and reuses it
  ASSERT_EQ(tw.blocks[0], x_block);
  bm.cache_full_blocks(&tw, w, 4);
  bm.free(&tb);
  const std::vector<int32_t> w_then_y = {9, 9, 9, 9, 5, 6, 7, 8, 0};
  EXPECT_EQ(bm.match_prefix(w_then_y, 2, &probe), 4);
  bm.free(&probe);
  bm.free(&tw);
  bm.free(&tz);
}

TEST(BlockManager, ConcurrentDuplicatesStillCacheTheirChildren) {
  // Two sequences computed the same first block side by side; the second's
  // next block names the first's cached block as its parent, so it is found.
  BlockManager bm(16, 4, true);
  const std::vector<int32_t> a = {1, 2, 3, 4, 5, 6, 7, 8, 0};
  const std::vector<int32_t> b = {1, 2, 3, 4, 9, 9, 9, 9, 0};
  BlockTable ta, tb, probe;
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate_slots(&ta, 0, 9, &copies));
  ASSERT_TRUE(bm.allocate_slots(&tb, 0, 9, &copies));
  bm.cache_full_blocks(&ta, a, 9);
  bm.cache_full_blocks(&tb, b, 9);
  EXPECT_NE(ta.blocks[0], tb.blocks[0]);
  bm.free(&ta);
  bm.free(&tb);
  EXPECT_EQ(bm.match_prefix(b, 2, &probe), 8);
  bm.free(&probe);
}

TEST(BlockManager, CachedBlockIsNeverWritten) {
  // A table that somehow writes into its own cached block gets a private copy,
  // leaving the cached contents intact for later hits.
  BlockManager bm(8, 4, true);
  std::vector<int32_t> prompt = iota_tokens(8);
  BlockTable t, probe;
  admit(bm, &t, prompt);
  const int32_t cached = t.blocks[1];
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate_slots(&t, 4, 4, &copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].src, cached);
  EXPECT_NE(t.blocks[1], cached);
  bm.free(&t);
  EXPECT_EQ(bm.match_prefix(prompt, 2, &probe), 8);
  EXPECT_EQ(probe.blocks[1], cached);
  bm.free(&probe);
}

TEST(BlockManager, DisabledPrefixCachingMatchesNothing) {
  BlockManager bm(8, 4, false);
  BlockTable t, u;
  std::vector<int32_t> prompt = iota_tokens(9);
  admit(bm, &t, prompt);
  EXPECT_TRUE(t.hashes.empty());
  EXPECT_EQ(bm.match_prefix(prompt, 2, &u), 0);
  EXPECT_EQ(bm.prefix_stats().queries, 0u);
  bm.free(&t);
  EXPECT_EQ(bm.num_free_blocks(), 8);
}

// Random allocate/append/fork/free/cache/match operations on many tables,
// checking after each that reference counts equal the number of holders and
// that the free count agrees with them.
TEST(BlockManager, RandomizedStress) {
  constexpr int kBlocks = 64, kBlockSize = 4, kTables = 24;
  BlockManager bm(kBlocks, kBlockSize, true);
  std::mt19937 rng(1234);
  struct Seq {
    BlockTable table;
    std::vector<int32_t> tokens;
    int computed = 0;
  };
  std::vector<Seq> seqs(kTables);
  // Few distinct prefixes so the cache gets hits.
  auto random_prompt = [&] {
    std::vector<int32_t> p;
    const int prefix = int(rng() % 3);
    const int len = 1 + int(rng() % 20);
    for (int i = 0; i < len; ++i) p.push_back(i < 12 ? prefix * 100 + i : int32_t(rng() % 50));
    return p;
  };
  // Contents model: what each physical block holds, to check a hit returns
  // exactly the tokens it claims.
  std::vector<std::vector<int32_t>> contents(kBlocks, std::vector<int32_t>(kBlockSize, -1));
  auto write = [&](Seq& s, int from, int to) {
    for (int p = from; p < to; ++p) contents[s.table.blocks[p / kBlockSize]][p % kBlockSize] = s.tokens[p];
  };
  auto apply_copies = [&](const std::vector<BlockCopy>& copies) {
    for (const BlockCopy& c : copies) contents[c.dst] = contents[c.src];
  };

  int hits = 0;
  for (int step = 0; step < 20000; ++step) {
    Seq& s = seqs[rng() % kTables];
    const int op = int(rng() % 10);
    std::vector<BlockCopy> copies;
    if (s.tokens.empty()) {
      s.tokens = random_prompt();
      const int max_blocks = (int(s.tokens.size()) - 1) / kBlockSize;
      s.computed = bm.match_prefix(s.tokens, max_blocks, &s.table);
      hits += s.computed > 0;
      for (int p = 0; p < s.computed; ++p)
        ASSERT_EQ(contents[s.table.blocks[p / kBlockSize]][p % kBlockSize], s.tokens[p]);
      const int n = int(s.tokens.size()) - s.computed;
      if (!bm.allocate_slots(&s.table, s.computed, n, &copies)) {
        bm.free(&s.table);
        s = Seq{};
      } else {
        apply_copies(copies);
        write(s, s.computed, int(s.tokens.size()));
        s.computed = int(s.tokens.size());
        bm.cache_full_blocks(&s.table, s.tokens, s.computed);
      }
    } else if (op < 5) {  // decode one token
      s.tokens.push_back(int32_t(rng() % 50));
      if (bm.allocate_slots(&s.table, s.computed, 1, &copies)) {
        apply_copies(copies);
        write(s, s.computed, s.computed + 1);
        ++s.computed;
        bm.cache_full_blocks(&s.table, s.tokens, s.computed);
      } else {
        s.tokens.pop_back();
      }
    } else if (op < 7) {  // fork into an empty slot
      for (Seq& other : seqs) {
        if (!other.tokens.empty()) continue;
        bm.fork(s.table, &other.table);
        other.tokens = s.tokens;
        other.computed = s.computed;
        break;
      }
    } else {
      bm.free(&s.table);
      s = Seq{};
    }

    std::map<int32_t, int> holders;
    for (const Seq& q : seqs) {
      ASSERT_EQ(q.table.blocks.size(), size_t((q.computed + kBlockSize - 1) / kBlockSize));
      for (int32_t b : q.table.blocks) ++holders[b];
      // No write ever landed in a block another table relies on.
      for (int p = 0; p < q.computed; ++p)
        ASSERT_EQ(contents[q.table.blocks[p / kBlockSize]][p % kBlockSize], q.tokens[p]) << "step " << step;
    }
    int referenced = 0;
    for (int32_t b = 0; b < kBlocks; ++b) {
      ASSERT_EQ(bm.ref_count(b), holders.count(b) ? holders[b] : 0) << "block " << b << " step " << step;
      referenced += bm.ref_count(b) > 0;
    }
    ASSERT_EQ(bm.num_free_blocks(), kBlocks - referenced);
  }
  EXPECT_GT(hits, 100);
  for (Seq& s : seqs) bm.free(&s.table);
  EXPECT_EQ(bm.num_free_blocks(), kBlocks);
  for (int32_t b = 0; b < kBlocks; ++b) EXPECT_EQ(bm.ref_count(b), 0);
}

}  // namespace
}  // namespace tidal
