// A data-parallel replica that fails (issue 16, item 6): with dp = 2 on
// stories260K, losing a rank of replica 1 fails replica 1's requests only;
// replica 0 finishes its own with the greedy tokens and takes every new
// request; /health and /metrics say so; with every replica down the engine
// refuses, and a switch to a fresh engine serves again.
//
// Each replica is tp = 2 over the in-process communicator, built as
// Deployment builds it for --tp 2 --dp 2 --comm local, but with its
// LocalGroup in the test's hands: failing the group is what a lost rank
// does to a replica (its driver's next step throws), so the failure goes
// through the real ParallelExecutor and no seam is needed.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "engine/async_engine.h"
#include "parallel/deployment.h"
#include "parallel/local_communicator.h"
#include "parallel/parallel_executor.h"
#include "parallel/rank_worker.h"
#include "server/health.h"
#include "server/metrics.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

constexpr char kLost[] = "rank 1 of this replica was lost";

ParallelConfig tp2_dp2() {
  ParallelConfig p;
  p.tp = 2;
  p.dp = 2;
  return p;
}

// One tp = 2 replica: rank 1 serves on a thread of its own, rank 0 is driven
// by the ParallelExecutor that executor() returns.
class LocalReplica {
 public:
  explicit LocalReplica(const Model& model) : model_(model) {
    rank1_ = std::thread([this] {
      try {
        RankWorker worker(model_, tp2_dp2(), std::make_unique<LocalCommunicator>(group_, 1), backend1_);
        worker.serve();
      } catch (const std::exception& e) {
        group_->fail(e.what());
      }
    });
  }
  ~LocalReplica() {
    group_->fail("the test is over");
    rank1_.join();
  }

  // Once: rank 0 joins rank 1 here (the constructor is collective).
  std::unique_ptr<Executor> executor() {
    auto rank0 = std::make_unique<RankWorker>(model_, tp2_dp2(), std::make_unique<LocalCommunicator>(group_, 0),
                                              backend0_);
    return std::make_unique<ParallelExecutor>(model_.config, tp2_dp2(), std::move(rank0),
                                              [group = group_](const std::string& reason) { group->fail(reason); });
  }
  // As a rank thread that threw does: every wait in the group fails.
  void lose_rank() { group_->fail(kLost); }

 private:
  const Model& model_;
  std::shared_ptr<LocalGroup> group_ = std::make_shared<LocalGroup>(2);
  ThreadPool pool0_{1}, pool1_{1};
  CpuBackend backend0_{pool0_}, backend1_{pool1_};
  std::thread rank1_;
};

// Two replicas and the engine over them (the replicas outlive the engine).
struct TwoReplicas {
  explicit TwoReplicas(TestModel& m) : r0(*m.model), r1(*m.model) {
    std::vector<std::unique_ptr<Executor>> executors;
    executors.push_back(r0.executor());
    executors.push_back(r1.executor());
    engine = std::make_unique<LLMEngine>(m.model->config, *m.tokenizer, std::move(executors), small_engine_config(256));
  }
  LocalReplica r0, r1;
  std::unique_ptr<LLMEngine> engine;
};

struct Outcome {
  std::vector<int32_t> tokens;
  std::string finish;
  std::string error;
  bool finished = false;
};

void collect(const std::vector<RequestOutput>& outputs, std::map<std::string, Outcome>& got) {
  for (const RequestOutput& out : outputs) {
    Outcome& o = got[out.request_id];
    EXPECT_FALSE(o.finished) << out.request_id << " got output after it finished";
    for (const CompletionDelta& d : out.deltas) {
      o.tokens.insert(o.tokens.end(), d.token_ids.begin(), d.token_ids.end());
      if (d.finish) o.finish = finish_reason_name(*d.finish);
    }
    if (!out.error.empty()) o.error = out.error;
    o.finished = out.finished;
  }
}

// Adds a request and returns the replica it went to, read off the replicas'
// waiting queues.
size_t add_and_locate(LLMEngine& engine, Request r) {
  const EngineStats before = engine.stats();
  engine.add_request(std::move(r));
  const EngineStats after = engine.stats();
  for (size_t i = 0; i < after.replicas.size(); ++i) {
    if (after.replicas[i].num_waiting > before.replicas[i].num_waiting) return i;
  }
  ADD_FAILURE() << "the request reached no replica";
  return after.replicas.size();
}

Request renamed(Request r, const std::string& id) {
  r.id = id;
  return r;
}

TEST(ReplicaFailure, OnlyTheFailedReplicasRequestsFailAndTheOtherServesOn) {
  TestModel m = load_stories();
  const Golden golden = load_golden(*m.tokenizer, "stories260K", false, 64);
  TwoReplicas dp(m);
  LLMEngine& engine = *dp.engine;

  std::map<std::string, size_t> replica_of;
  std::map<std::string, size_t> case_of;  // request id -> golden case
  for (size_t i = 0; i < golden.requests.size(); ++i) {
    replica_of[golden.requests[i].id] = add_and_locate(engine, golden.requests[i]);
    case_of[golden.requests[i].id] = i;
  }
  size_t on_1 = 0;
  for (const auto& [id, replica] : replica_of) on_1 += replica == 1;
  ASSERT_GT(on_1, 0u);
  ASSERT_LT(on_1, replica_of.size());

  std::map<std::string, Outcome> got;
  for (int i = 0; i < 3; ++i) collect(engine.step(), got);
  for (const auto& [id, o] : got) EXPECT_FALSE(o.tokens.empty() || o.finished) << id;

  dp.r1.lose_rank();
  collect(engine.step(), got);
  for (const auto& [id, replica] : replica_of) {
    if (replica != 1) continue;
    const Outcome& o = got[id];
    EXPECT_TRUE(o.finished) << id;
    EXPECT_EQ(o.finish, "abort") << id;
    EXPECT_NE(o.error.find(kLost), std::string::npos) << id << ": " << o.error;
  }

  // New requests go to replica 0, however idle replica 1 now looks.
  for (size_t i = 0; i < 2; ++i) {
    const std::string id = "new" + std::to_string(i);
    EXPECT_EQ(add_and_locate(engine, renamed(golden.requests[i], id)), 0u) << id;
    replica_of[id] = 0;
    case_of[id] = i;
  }
  const uint64_t replica1_tokens = engine.stats().replicas[1].generation_tokens;
  while (engine.has_unfinished()) collect(engine.step(), got);

  for (const auto& [id, replica] : replica_of) {
    if (replica != 0) continue;
    const Outcome& o = got[id];
    EXPECT_TRUE(o.error.empty()) << id << ": " << o.error;
    EXPECT_EQ(o.finish, "length") << id;
    EXPECT_EQ(o.tokens, golden.greedy[case_of[id]]) << id;
  }

  const EngineStats s = engine.stats();
  EXPECT_EQ(s.num_replicas, 2);
  EXPECT_EQ(s.replicas_up, 1);
  EXPECT_EQ(s.replicas[0].replicas_up, 1);
  EXPECT_EQ(s.replicas[1].replicas_up, 0);
  EXPECT_NE(s.replicas[1].failure.find(kLost), std::string::npos) << s.replicas[1].failure;
  EXPECT_EQ(s.replicas[1].generation_tokens, replica1_tokens);  // it ran nothing since
  EXPECT_EQ(s.num_used_blocks, 0);                               // the failed requests' blocks too

  ServerMetrics metrics("stories");
  const std::string text = render_metrics({EngineMetrics{metrics, s}});
  EXPECT_NE(text.find("# TYPE tidal:replica_up gauge"), std::string::npos);
  EXPECT_NE(text.find(R"(tidal:replica_up{model_name="stories",engine="0"} 1)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(tidal:replica_up{model_name="stories",engine="1"} 0)"), std::string::npos) << text;

  const HealthReport health = health_report({{"stories", s}});
  EXPECT_EQ(health.status, 200);
  const auto body = nlohmann::json::parse(health.body);
  EXPECT_EQ(body["status"], "degraded");
  ASSERT_EQ(body["models"].size(), 1u);
  const auto& model = body["models"][0];
  EXPECT_EQ(model["model"], "stories");
  EXPECT_EQ(model["replicas"], 2);
  EXPECT_EQ(model["replicas_up"], 1);
  ASSERT_EQ(model["down"].size(), 1u);
  EXPECT_EQ(model["down"][0]["replica"], 1);
  EXPECT_NE(model["down"][0]["error"].get<std::string>().find(kLost), std::string::npos);
}

TEST(ReplicaFailure, WithEveryReplicaDownTheEngineRefuses) {
  TestModel m = load_stories();
  const Golden golden = load_golden(*m.tokenizer, "stories260K", false, 8);
  TwoReplicas dp(m);
  LLMEngine& engine = *dp.engine;
  EXPECT_EQ(health_report({{"stories", engine.stats()}}).status, 200);
  EXPECT_TRUE(health_report({{"stories", engine.stats()}}).body.empty());  // vLLM's answer while all is well

  std::map<std::string, Outcome> got;
  ASSERT_EQ(add_and_locate(engine, renamed(golden.requests[0], "a")), 0u);
  dp.r0.lose_rank();
  collect(engine.step(), got);
  EXPECT_FALSE(got["a"].error.empty());
  // Replica 0 is down and idle; the request goes to replica 1 all the same.
  ASSERT_EQ(add_and_locate(engine, renamed(golden.requests[0], "b")), 1u);
  dp.r1.lose_rank();
  collect(engine.step(), got);
  EXPECT_FALSE(got["b"].error.empty());
  EXPECT_FALSE(engine.has_unfinished());

  EXPECT_THROW(engine.add_request(renamed(golden.requests[0], "c")), Error);
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.replicas_up, 0);
  const HealthReport health = health_report({{"stories", s}});
  EXPECT_EQ(health.status, 503);
  EXPECT_EQ(nlohmann::json::parse(health.body)["status"], "unavailable");
}

// Follows requests submitted to an AsyncEngine.
class Sinks {
 public:
  AsyncEngine::Sink sink() {
    return [this](const RequestOutput& out) {
      std::lock_guard<std::mutex> lock(mutex_);
      collect({out}, got_);
      done_.notify_all();
    };
  }
  Outcome wait(const std::string& id) {
    std::unique_lock<std::mutex> lock(mutex_);
    EXPECT_TRUE(done_.wait_for(lock, std::chrono::seconds(60), [&] { return got_[id].finished; })) << id;
    return got_[id];
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::map<std::string, Outcome> got_;
};

TEST(ReplicaFailure, TheServingLoopGoesOnAndASwitchBringsServiceBack) {
  TestModel m = load_stories();
  const Golden golden = load_golden(*m.tokenizer, "stories260K", false, 64);
  TwoReplicas dp(m);
  ParallelConfig fresh_layout;
  fresh_layout.dp = 2;
  Deployment fresh_deployment(*m.model, fresh_layout, /*threads=*/1);
  LLMEngine fresh(m.model->config, *m.tokenizer, fresh_deployment.executors(), small_engine_config(256));
  Sinks sinks;
  AsyncEngine async(*dp.engine, 64);
  auto submit = [&](const std::string& id, size_t golden_case) {
    return async.submit(renamed(golden.requests[golden_case], id), sinks.sink());
  };

  // Replica 1 learns of its loss at its next step: "b" goes there (the
  // least loaded while "a" runs on replica 0) and fails; "a" does not.
  dp.r1.lose_rank();
  ASSERT_EQ(submit("a", 0), AsyncEngine::SubmitResult::kAccepted);
  ASSERT_EQ(submit("b", 1), AsyncEngine::SubmitResult::kAccepted);
  const Outcome b = sinks.wait("b");
  EXPECT_NE(b.error.find(kLost), std::string::npos) << b.error;
  const Outcome a = sinks.wait("a");
  EXPECT_TRUE(a.error.empty()) << a.error;
  EXPECT_EQ(a.tokens, golden.greedy[0]);
  // A later request is served by replica 0 (on replica 1 it would fail).
  ASSERT_EQ(submit("c", 2), AsyncEngine::SubmitResult::kAccepted);
  const Outcome c = sinks.wait("c");
  EXPECT_TRUE(c.error.empty()) << c.error;
  EXPECT_EQ(c.tokens, golden.greedy[2]);

  // The last replica goes: its request fails, and then submissions are refused.
  dp.r0.lose_rank();
  ASSERT_EQ(submit("d", 3), AsyncEngine::SubmitResult::kAccepted);
  EXPECT_FALSE(sinks.wait("d").error.empty());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (async.stats().replicas_up != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(submit("e", 0), AsyncEngine::SubmitResult::kUnavailable);

  // A switch (what PUT /admin/v1/config does at a step boundary) to a fresh
  // engine: every replica serves again.
  async.swap_engine([&](LLMEngine&) -> LLMEngine& { return fresh; });
  EXPECT_EQ(async.stats().replicas_up, 2);
  ASSERT_EQ(submit("f", 3), AsyncEngine::SubmitResult::kAccepted);
  const Outcome f = sinks.wait("f");
  EXPECT_TRUE(f.error.empty()) << f.error;
  EXPECT_EQ(f.tokens, golden.greedy[3]);
  async.shutdown(true);
}

// A switch while replica 1 is down moves replica 0's requests, mid-way, to
// the new engine, which finishes them as if nothing had happened.
TEST(ReplicaFailure, ASwitchMovesTheSurvivingReplicasRequests) {
  TestModel m = load_stories();
  const Golden golden = load_golden(*m.tokenizer, "stories260K", false, 64);
  TwoReplicas dp(m);
  LLMEngine& engine = *dp.engine;
  std::map<std::string, size_t> replica_of;
  for (const Request& r : golden.requests) replica_of[r.id] = add_and_locate(engine, r);
  std::map<std::string, Outcome> got;
  for (int i = 0; i < 3; ++i) collect(engine.step(), got);
  dp.r1.lose_rank();
  collect(engine.step(), got);

  std::vector<MovedRequest> moved = engine.release_requests();
  size_t on_0 = 0;
  for (const auto& [id, replica] : replica_of) on_0 += replica == 0;
  EXPECT_EQ(moved.size(), on_0);
  LLMEngine one(*m.model, *m.tokenizer, *m.backend, small_engine_config(256));
  one.adopt_requests(moved);
  while (one.has_unfinished()) collect(one.step(), got);
  for (size_t i = 0; i < golden.requests.size(); ++i) {
    const std::string& id = golden.requests[i].id;
    if (replica_of[id] != 0) continue;
    EXPECT_TRUE(got[id].error.empty()) << id;
    EXPECT_EQ(got[id].tokens, golden.greedy[i]) << id;
  }
}

}  // namespace
}  // namespace tidal::test
