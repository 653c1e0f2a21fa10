#include "parallel/local_communicator.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace tidal {

LocalGroup::LocalGroup(int size) : size_(size), slots_(size_t(size), nullptr) {}

void LocalGroup::fail(const std::string& reason) {
  std::vector<std::weak_ptr<LocalGroup>> children;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (failure_.empty()) failure_ = reason.empty() ? "a rank failed" : reason;
    children = children_;
    cv_.notify_all();
  }
  for (const auto& weak : children)
    if (auto child = weak.lock()) child->fail(reason);
}

void LocalGroup::throw_if_failed() const {
  if (!failure_.empty()) throw Error(ErrorCode::kInternal, failure_);
}

template <typename Read>
void LocalGroup::collective(int rank, const void* mine, Read&& read) {
  std::unique_lock<std::mutex> lock(mutex_);
  throw_if_failed();
  const uint64_t generation = generation_;
  slots_[size_t(rank)] = mine;
  if (++arrived_ == size_) {
    reading_ = true;
    cv_.notify_all();
  } else {
    cv_.wait(lock, [&] { return reading_ || !failure_.empty(); });
    throw_if_failed();
  }
  lock.unlock();
  read(slots_);
  lock.lock();
  // Nobody leaves before everybody has read: each rank's buffer must stay
  // valid (and its slot untouched) until then.
  if (++done_reading_ == size_) {
    reading_ = false;
    arrived_ = 0;
    done_reading_ = 0;
    ++generation_;
    cv_.notify_all();
  } else {
    cv_.wait(lock, [&] { return generation_ != generation || !failure_.empty(); });
    throw_if_failed();
  }
}

void LocalGroup::send(int src, int dst, const void* data, size_t bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  std::lock_guard<std::mutex> lock(mutex_);
  throw_if_failed();
  mailboxes_[{src, dst}].emplace_back(p, p + bytes);
  cv_.notify_all();
}

void LocalGroup::recv(int src, int dst, void* data, size_t bytes) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto& box = mailboxes_[{src, dst}];
  cv_.wait(lock, [&] { return !box.empty() || !failure_.empty(); });
  throw_if_failed();
  std::vector<uint8_t> message = std::move(box.front());
  box.pop_front();
  lock.unlock();
  if (message.size() != bytes) {
    throw Error(ErrorCode::kInternal, "rank " + std::to_string(dst) + " expected " + std::to_string(bytes) +
                                          " bytes from rank " + std::to_string(src) + ", got " +
                                          std::to_string(message.size()));
  }
  std::memcpy(data, message.data(), bytes);
}

std::shared_ptr<LocalGroup> LocalGroup::join_split(uint64_t epoch, int color, int size) {
  std::lock_guard<std::mutex> lock(mutex_);
  throw_if_failed();
  auto key = std::make_pair(epoch, color);
  auto& [group, joined] = splits_[key];
  if (!group) {
    group = std::make_shared<LocalGroup>(size);
    children_.push_back(group);
  }
  std::shared_ptr<LocalGroup> result = group;
  if (++joined == size) splits_.erase(key);
  return result;
}

void LocalCommunicator::all_reduce_sum(float* data, size_t count) {
  gathered_.resize(count * size_t(size()));
  all_gather(data, count * sizeof(float), gathered_.data());
  sum_in_rank_order(gathered_.data(), size(), count, data);
}

void LocalCommunicator::all_gather(const void* in, size_t bytes, void* out) {
  group_->collective(rank_, in, [&](const std::vector<const void*>& slots) {
    for (size_t r = 0; r < slots.size(); ++r) std::memcpy(static_cast<uint8_t*>(out) + r * bytes, slots[r], bytes);
  });
}

void LocalCommunicator::broadcast(void* data, size_t bytes, int root, Wait) {
  group_->collective(rank_, data, [&](const std::vector<const void*>& slots) {
    if (rank_ != root) std::memcpy(data, slots[size_t(root)], bytes);
  });
}

void LocalCommunicator::send(const void* data, size_t bytes, int dst) { group_->send(rank_, dst, data, bytes); }

void LocalCommunicator::recv(void* data, size_t bytes, int src) { group_->recv(src, rank_, data, bytes); }

void LocalCommunicator::barrier() {
  group_->collective(rank_, nullptr, [](const std::vector<const void*>&) {});
}

std::unique_ptr<Communicator> LocalCommunicator::split(int color, int key) {
  const int mine[2] = {color, key};
  std::vector<int> all(2 * size_t(size()));
  all_gather(mine, sizeof mine, all.data());
  std::vector<std::pair<int, int>> members;  // (key, old rank) of this color
  for (int r = 0; r < size(); ++r)
    if (all[2 * size_t(r)] == color) members.emplace_back(all[2 * size_t(r) + 1], r);
  std::sort(members.begin(), members.end());
  const int index = int(std::find(members.begin(), members.end(), std::make_pair(key, rank_)) - members.begin());
  return std::make_unique<LocalCommunicator>(group_->join_split(splits_made_++, color, int(members.size())), index);
}

}  // namespace tidal
