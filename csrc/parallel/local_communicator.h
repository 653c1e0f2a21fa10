// The in-process communicator: ranks are threads of one process that meet
// in a shared LocalGroup. Used for --comm local and by the tests. Waits are
// condition variables, so a rank idling for its next command costs nothing.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "parallel/communicator.h"

namespace tidal {

// The state the ranks of one group share.
class LocalGroup {
 public:
  // Rank r talks through LocalCommunicator(group, r), one thread at a time.
  explicit LocalGroup(int size);

  // Wakes every waiting rank with Error(kInternal, reason), now and in every
  // later operation: a rank that cannot go on must not leave its peers
  // waiting forever.
  void fail(const std::string& reason);

 private:
  friend class LocalCommunicator;

  // Runs one collective: publishes `mine` as rank's contribution, waits for
  // every rank's, calls read(contributions), and returns once every rank
  // has read (so `mine` may then be reused).
  template <typename Read>
  void collective(int rank, const void* mine, Read&& read);
  void send(int src, int dst, const void* data, size_t bytes);
  void recv(int src, int dst, void* data, size_t bytes);
  std::shared_ptr<LocalGroup> join_split(uint64_t epoch, int color, int size);
  void throw_if_failed() const;  // mutex_ held

  const int size_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::string failure_;  // non-empty once failed
  // Collectives: contributions of the current one, how many ranks have
  // published / finished reading it, and how many collectives have ended.
  std::vector<const void*> slots_;
  int arrived_ = 0;
  int done_reading_ = 0;
  bool reading_ = false;
  uint64_t generation_ = 0;
  // Point to point: queued messages per (src, dst).
  std::map<std::pair<int, int>, std::deque<std::vector<uint8_t>>> mailboxes_;
  // Groups made by split(), until every member has picked its group up.
  std::map<std::pair<uint64_t, int>, std::pair<std::shared_ptr<LocalGroup>, int>> splits_;
  // Sub-groups, so that fail() reaches ranks waiting in them too.
  std::vector<std::weak_ptr<LocalGroup>> children_;
};

class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<LocalGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size_; }
  void all_reduce_sum(float* data, size_t count) override;
  void all_gather(const void* in, size_t bytes, void* out) override;
  void broadcast(void* data, size_t bytes, int root, Wait wait) override;
  void send(const void* data, size_t bytes, int dst) override;
  void recv(void* data, size_t bytes, int src) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;

 private:
  std::shared_ptr<LocalGroup> group_;
  int rank_;
  uint64_t splits_made_ = 0;  // same on every rank: split() is collective
  std::vector<float> gathered_;
};

}  // namespace tidal
