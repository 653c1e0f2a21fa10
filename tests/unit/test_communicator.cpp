// The in-process communicator (and, through the same checks, the contract
// every Communicator keeps): collectives agree on every rank, sums are added
// in rank order, point-to-point messages are buffered and ordered, split
// groups work on their own, and a failed group wakes every waiting rank.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "core/error.h"
#include "parallel/local_communicator.h"

namespace tidal {
namespace {

std::vector<std::unique_ptr<Communicator>> local_group(int size) {
  auto group = std::make_shared<LocalGroup>(size);
  std::vector<std::unique_ptr<Communicator>> ranks;
  for (int r = 0; r < size; ++r) ranks.push_back(std::make_unique<LocalCommunicator>(group, r));
  return ranks;
}

// Runs body(comm) on one thread per rank and waits for all.
void on_every_rank(std::vector<std::unique_ptr<Communicator>>& ranks, const std::function<void(Communicator&)>& body) {
  std::vector<std::thread> threads;
  for (auto& comm : ranks) threads.emplace_back([&body, &comm] { body(*comm); });
  for (std::thread& t : threads) t.join();
}

TEST(LocalCommunicator, AllReduceAddsInRankOrderOnEveryRank) {
  auto ranks = local_group(3);
  // Values whose float sum depends on the order: (a + b) + c != a + (b + c).
  const float parts[3] = {1e8f, 1.0f, -1e8f};
  const float want = (parts[0] + parts[1]) + parts[2];
  std::vector<float> got(3);
  on_every_rank(ranks, [&](Communicator& c) {
    std::vector<float> v(1000, parts[c.rank()]);
    for (int i = 0; i < 50; ++i) {  // many back-to-back collectives
      std::vector<float> w = v;
      c.all_reduce_sum(w.data(), w.size());
      for (float x : w) ASSERT_EQ(x, want);
    }
    got[size_t(c.rank())] = v[0];
  });
  EXPECT_EQ(got, std::vector<float>(parts, parts + 3));
}

TEST(LocalCommunicator, AllGatherAndBroadcastOfEverySize) {
  auto ranks = local_group(4);
  on_every_rank(ranks, [](Communicator& c) {
    for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(4096)}) {
      std::vector<int> mine(n, c.rank() + 1), all(4 * n, -1);
      c.all_gather(mine.data(), n * sizeof(int), all.data());
      for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], int(i / n) + 1);
      for (int root = 0; root < 4; ++root) {
        std::vector<int> v(n, c.rank() == root ? 100 + root : 0);
        c.broadcast(v.data(), n * sizeof(int), root, Wait::kBounded);
        for (int x : v) ASSERT_EQ(x, 100 + root);
      }
    }
    c.barrier();
  });
}

TEST(LocalCommunicator, SendIsBufferedAndOrdered) {
  auto ranks = local_group(2);
  on_every_rank(ranks, [](Communicator& c) {
    const int peer = 1 - c.rank();
    // Both ranks send everything before receiving anything: a send that
    // waited for its receiver would deadlock here.
    for (int i = 0; i < 100; ++i) c.send(&i, sizeof i, peer);
    for (int i = 0; i < 100; ++i) {
      int got = -1;
      c.recv(&got, sizeof got, peer);
      ASSERT_EQ(got, i);
    }
  });
}

TEST(LocalCommunicator, ReceivingTheWrongSizeIsAnError) {
  auto ranks = local_group(2);
  const int64_t big = 1;
  ranks[0]->send(&big, sizeof big, 1);
  int32_t small;
  EXPECT_THROW(ranks[1]->recv(&small, sizeof small, 0), Error);
}

TEST(LocalCommunicator, SplitMakesIndependentGroupsRankedByKey) {
  auto ranks = local_group(4);
  on_every_rank(ranks, [](Communicator& c) {
    // Colors {0, 1, 0, 1}; keys reversed, so the higher old rank comes first.
    auto part = c.split(c.rank() % 2, -c.rank());
    ASSERT_EQ(part->size(), 2);
    EXPECT_EQ(part->rank(), c.rank() < 2 ? 1 : 0);
    float v = float(c.rank());
    part->all_reduce_sum(&v, 1);
    EXPECT_EQ(v, c.rank() % 2 == 0 ? 2.0f : 4.0f);
    // The parent group still works, interleaved with the parts.
    float w = 1.0f;
    c.all_reduce_sum(&w, 1);
    EXPECT_EQ(w, 4.0f);
  });
}

TEST(LocalCommunicator, FailWakesWaitersInTheGroupAndItsParts) {
  auto group = std::make_shared<LocalGroup>(3);
  std::vector<std::unique_ptr<Communicator>> ranks;
  for (int r = 0; r < 3; ++r) ranks.push_back(std::make_unique<LocalCommunicator>(group, r));
  std::atomic<int> woken{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      float v = 0;
      try {
        // Rank 2 joins the split too, below; the failure may already hit here.
        auto part = ranks[size_t(r)]->split(0, r);
        if (r == 0) {
          part->all_reduce_sum(&v, 1);  // rank 2 never joins: waits until failed
        } else {
          ranks[1]->recv(&v, sizeof v, 2);  // rank 2 never sends
        }
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("rank 2 died"), std::string::npos) << e.what();
        ++woken;
      }
    });
  }
  auto part2 = ranks[2]->split(0, 2);
  group->fail("rank 2 died");
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(woken.load(), 2);
  float v = 0;
  EXPECT_THROW(ranks[0]->all_reduce_sum(&v, 1), Error);  // and every later operation
}

}  // namespace
}  // namespace tidal
