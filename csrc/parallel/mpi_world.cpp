#include "parallel/mpi_world.h"

#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "parallel/mpi_communicator.h"

namespace tidal {

#ifdef TIDAL_HAVE_MPI

namespace {

std::vector<uint8_t> encode(const nlohmann::json& j) {
  const std::string text = j.dump();
  return {text.begin(), text.end()};
}

}  // namespace

MpiWorld::MpiWorld(std::chrono::milliseconds timeout) : timeout_(timeout) {
  session_ = std::make_unique<MpiSession>();
  rank_ = session_->world_rank();
  size_ = session_->world_size();
  control_ = session_->world(timeout);
  std::fprintf(stderr, "tidal: MPI rank %d of %d (pid %d, host %s): %s\n", rank_, size_, int(getpid()),
               session_->host().c_str(), rank_ == 0 ? "driver" : "worker");
}

MpiWorld::~MpiWorld() {
  if (is_driver()) {
    try {
      const std::vector<uint8_t> quit = encode({{"quit", true}});
      uint64_t size = quit.size();
      control_->broadcast(&size, sizeof size, 0, Wait::kBounded);
      control_->broadcast(const_cast<uint8_t*>(quit.data()), quit.size(), 0, Wait::kBounded);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tidal: telling the MPI workers to quit failed: %s\n", e.what());
    }
  }
  control_.reset();  // before MPI_Finalize
}

int MpiWorld::local_rank() const { return session_->local_rank(); }
int MpiWorld::local_size() const { return session_->local_size(); }
void MpiWorld::fail_stop(std::chrono::milliseconds delay) { session_->fail_stop(delay); }

void MpiWorld::announce(const DeployOrder& order) {
  if (!is_driver()) throw Error(ErrorCode::kInternal, "only the MPI driver gives orders");
  std::vector<uint8_t> bytes = encode({{"variant", order.variant},
                                       {"tp", order.layout.tp},
                                       {"pp", order.layout.pp},
                                       {"dp", order.layout.dp},
                                       {"comm", order.layout.comm},
                                       {"comm_timeout_s", order.layout.comm_timeout_s}});
  uint64_t size = bytes.size();
  control_->broadcast(&size, sizeof size, 0, Wait::kBounded);
  control_->broadcast(bytes.data(), bytes.size(), 0, Wait::kBounded);
}

void MpiWorld::ready(const std::string& error) {
  // Fixed-size reports: a flag and the start of the reason.
  constexpr size_t kReport = 256;
  std::vector<char> mine(kReport, 0);
  if (!error.empty()) {
    mine[0] = 1;
    error.copy(mine.data() + 1, kReport - 2);
  }
  std::vector<char> all(kReport * size_t(size_));
  control_->all_gather(mine.data(), kReport, all.data());
  for (int r = 0; r < size_; ++r) {
    const char* report = all.data() + size_t(r) * kReport;
    if (report[0]) {
      throw Error(ErrorCode::kInternal, "MPI rank " + std::to_string(r) + " could not get ready: " + (report + 1));
    }
  }
}

std::unique_ptr<MpiCommunicator> MpiWorld::first_ranks(int ranks) {
  const bool member = rank_ < ranks;
  std::unique_ptr<MpiCommunicator> group = control_->split_mpi(member ? 0 : 1, rank_);
  if (!member) return nullptr;
  return group;
}

void MpiWorld::serve_orders(const std::function<void(const DeployOrder&)>& build) {
  if (is_driver()) throw Error(ErrorCode::kInternal, "the MPI driver does not take orders");
  for (;;) {
    uint64_t size = 0;
    control_->broadcast(&size, sizeof size, 0, Wait::kForever);
    std::vector<uint8_t> bytes(size);
    control_->broadcast(bytes.data(), bytes.size(), 0, Wait::kBounded);
    const nlohmann::json j = nlohmann::json::parse(bytes.begin(), bytes.end());
    if (j.contains("quit")) return;
    DeployOrder order;
    order.variant = j.at("variant").get<std::string>();
    order.layout.tp = j.at("tp").get<int>();
    order.layout.pp = j.at("pp").get<int>();
    order.layout.dp = j.at("dp").get<int>();
    order.layout.comm = j.at("comm").get<std::string>();
    order.layout.comm_timeout_s = j.at("comm_timeout_s").get<double>();
    build(order);
  }
}

#else  // built without MPI: joining a job is refused with the reason

// Never constructed; complete so that the members' destructors compile.
class MpiSession {};
class MpiCommunicator {};

MpiWorld::MpiWorld(std::chrono::milliseconds timeout) : timeout_(timeout) {
  throw Error(ErrorCode::kUnsupported,
              "--comm mpi/nccl: this tidal was built without MPI (install libopenmpi-dev and rebuild)");
}
MpiWorld::~MpiWorld() = default;
int MpiWorld::local_rank() const { return 0; }
int MpiWorld::local_size() const { return 1; }
void MpiWorld::fail_stop(std::chrono::milliseconds) {}
void MpiWorld::announce(const DeployOrder&) {}
void MpiWorld::ready(const std::string&) {}
std::unique_ptr<MpiCommunicator> MpiWorld::first_ranks(int) { return nullptr; }
void MpiWorld::serve_orders(const std::function<void(const DeployOrder&)>&) {}

#endif

}  // namespace tidal
