// Live reconfiguration: requests moved between engines mid-generation
// (LLMEngine::release_requests / adopt_requests) continue exactly where they
// were, and ServedModelRuntime switches a serving model's configuration
// under load without losing, repeating or changing a token.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "engine/pool_turns.h"
#include "engine/stats_carry.h"
#include "parallel/deployment.h"
#include "reconfig/served_model.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

const std::vector<std::string> kPrompts = {"Once upon a time", "The little dog", "Lily and Ben went to the park",
                                           "One day", "Tom had a red ball"};

// Greedy, seeded sampling with n = 2, logprobs with alternatives, a stop
// string: everything a moved request carries.
std::vector<Request> mixed_requests(const Tokenizer& tok) {
  std::vector<Request> rs;
  for (size_t i = 0; i < kPrompts.size() * 2; ++i) {
    Request r;
    r.id = std::to_string(i);
    r.prompt = tok.encode(kPrompts[i % kPrompts.size()], true);
    r.sampling.max_tokens = 20 + int(i) * 7;
    r.sampling.ignore_eos = true;
    if (i % 2 == 0) {
      r.sampling.temperature = 0.0f;
    } else {
      r.sampling.temperature = 0.8f;
      r.sampling.top_p = 0.9f;
      r.sampling.seed = 77 + i;
    }
    if (i % 3 == 1) r.sampling.n = 2;
    if (i % 4 == 0) r.sampling.logprobs = 2;
    if (i == 5) r.sampling.stop = {"park"};
    rs.push_back(r);
  }
  return rs;
}

struct Stream {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::string text;
  std::string finish;
  int completion_tokens = 0;  // the request's usage, as last reported
};
using Streams = std::map<std::pair<std::string, int>, Stream>;

void collect(const std::vector<RequestOutput>& outputs, Streams& streams) {
  for (const RequestOutput& out : outputs) {
    for (const CompletionDelta& d : out.deltas) {
      Stream& s = streams[{out.request_id, d.index}];
      EXPECT_TRUE(s.finish.empty()) << out.request_id << " got output after it finished";
      s.tokens.insert(s.tokens.end(), d.token_ids.begin(), d.token_ids.end());
      s.logprobs.insert(s.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
      s.text += d.text;
      if (d.finish) s.finish = finish_reason_name(*d.finish);
    }
    for (auto& [key, s] : streams)
      if (key.first == out.request_id) s.completion_tokens = out.completion_tokens;
  }
}

// Runs the requests on engines[0], moving every request to the next engine
// (round robin) after each `every` steps.
Streams run_moving(const std::vector<LLMEngine*>& engines, std::vector<Request> requests, int every) {
  Streams streams;
  size_t current = 0;
  for (Request& r : requests) engines[0]->add_request(std::move(r));
  int steps = 0;
  while (engines[current]->has_unfinished()) {
    collect(engines[current]->step(), streams);
    if (++steps % every == 0 && engines.size() > 1) {
      const size_t next = (current + 1) % engines.size();
      std::vector<MovedRequest> moved = engines[current]->release_requests();
      EXPECT_FALSE(engines[current]->has_unfinished());
      EXPECT_EQ(engines[current]->stats().num_used_blocks, 0) << "release frees every block";
      engines[next]->adopt_requests(moved);
      EXPECT_TRUE(moved.empty());
      current = next;
    }
  }
  return streams;
}

void expect_same_streams(const Streams& got, const Streams& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [key, w] : want) {
    const Stream& g = got.at(key);
    EXPECT_EQ(g.tokens, w.tokens) << key.first << "/" << key.second;
    EXPECT_EQ(g.logprobs, w.logprobs) << key.first << "/" << key.second;
    EXPECT_EQ(g.text, w.text) << key.first << "/" << key.second;
    EXPECT_EQ(g.finish, w.finish) << key.first << "/" << key.second;
    EXPECT_EQ(g.completion_tokens, w.completion_tokens) << key.first;
  }
}

TEST(StatsCarry, CountersOfRetiredEnginesNeverGoBackPerReplica) {
  EngineStats one;  // an engine with one replica
  one.prefix = {100, 40};
  one.num_preemptions = 2;
  one.generation_tokens = 50;
  one.steps = 30;
  EngineStats two;  // then one with two
  two.replicas.resize(2);
  two.replicas[0].prefix = {10, 1};
  two.replicas[0].steps = 5;
  two.replicas[1].prefix = {20, 2};
  two.replicas[1].generation_tokens = 7;
  two.replicas[1].steps = 5;
  two.prefix = {30, 3};
  two.generation_tokens = 7;
  two.steps = 5;
  StatsCarry carry;
  carry.retire(one);
  const EngineStats seen = carry.apply(two);
  ASSERT_EQ(seen.replicas.size(), 2u);
  EXPECT_EQ(seen.replicas[0].prefix.queries, 110u);
  EXPECT_EQ(seen.replicas[1].prefix.queries, 20u);
  EXPECT_EQ(seen.prefix.queries, 130u);
  EXPECT_EQ(seen.prefix.hits, 43u);
  EXPECT_EQ(seen.num_preemptions, 2u);
  EXPECT_EQ(seen.generation_tokens, 57u);
  EXPECT_EQ(seen.steps, 35u);
  // Back to one replica: the second stays reported, with its counters.
  carry.retire(two);
  EngineStats fresh;
  fresh.num_running = 3;
  const EngineStats after = carry.apply(fresh);
  ASSERT_EQ(after.replicas.size(), 2u);
  EXPECT_EQ(after.replicas[0].prefix.queries, 110u);
  EXPECT_EQ(after.replicas[1].prefix.queries, 20u);
  EXPECT_EQ(after.replicas[1].num_running, 0u);
  EXPECT_EQ(after.num_running, 3u);
  EXPECT_EQ(after.generation_tokens, 57u);
  EXPECT_EQ(after.steps, 35u);
}

TEST(LiveSwitch, MovedRequestsContinueExactlyOnAnotherEngine) {
  TestModel m = load_stories();
  const std::vector<Request> requests = mixed_requests(*m.tokenizer);
  LLMEngine reference(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  const Streams want = run_moving({&reference}, requests, 1);

  CpuBackend other_backend(*m.pool);
  LLMEngine a(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  LLMEngine b(*m.model, *m.tokenizer, other_backend, small_engine_config(64));
  // Pipeline and data parallelism are bit-exact with one device.
  ParallelConfig pp2;
  pp2.pp = 2;
  Deployment pipeline(*m.model, pp2, 1);
  LLMEngine c(m.model->config, *m.tokenizer, pipeline.executors(), small_engine_config());
  ParallelConfig dp2;
  dp2.dp = 2;
  Deployment replicas(*m.model, dp2, 1);
  LLMEngine d(m.model->config, *m.tokenizer, replicas.executors(), small_engine_config());
  for (int every : {1, 3, 7}) {
    SCOPED_TRACE("moved every " + std::to_string(every) + " steps");
    expect_same_streams(run_moving({&a, &b, &c, &d}, requests, every), want);
    for (LLMEngine* e : {&a, &b, &c, &d}) EXPECT_EQ(e->stats().num_used_blocks, 0);
  }
}

TEST(LiveSwitch, AdoptRefusesRequestsThatDoNotFitAndTakesNothing) {
  TestModel m = load_stories();
  LLMEngine a(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  CpuBackend other_backend(*m.pool);
  LLMEngine tiny(*m.model, *m.tokenizer, other_backend, small_engine_config(2));  // 32 tokens of context
  Request r = greedy_request("long", m.tokenizer->encode("Once upon a time", true), 100);
  a.add_request(r);
  a.step();
  std::vector<MovedRequest> moved = a.release_requests();
  EXPECT_THROW(tiny.adopt_requests(moved), Error);
  EXPECT_FALSE(tiny.has_unfinished());
  // Nothing was lost: the request goes back and finishes where it was.
  ASSERT_EQ(moved.size(), 1u);
  a.adopt_requests(moved);
  int tokens = 1;  // the first step sampled one
  while (a.has_unfinished()) {
    for (const RequestOutput& out : a.step())
      for (const CompletionDelta& d : out.deltas) tokens += int(d.token_ids.size());
  }
  EXPECT_EQ(tokens, 100);
}

// A ServedModelRuntime over stories260K with the test model's pool.
struct Runtime {
  TestModel m = load_stories();
  PoolTurns turns;
  std::unique_ptr<ServedModelRuntime> runtime;

  explicit Runtime(size_t memory_limit = 0) {
    EngineConfig e = small_engine_config(0);
    e.kv_cache_bytes = size_t(8) << 20;
    ServedModelRuntime::Options o;
    o.memory_limit_bytes = memory_limit;
    o.name = "stories";
    runtime = std::make_unique<ServedModelRuntime>(ModelSource{*m.model, *m.tokenizer, *m.pool, turns, e, 1},
                                                   ServedConfig{}, o);
  }
};

// Submits every request to the runtime's engine and returns a future of
// their streams.
std::future<Streams> submit_all(AsyncEngine& engine, const std::vector<Request>& requests) {
  struct Shared {
    std::mutex mutex;
    Streams streams;
    size_t left;
    std::promise<Streams> done;
  };
  auto shared = std::make_shared<Shared>();
  shared->left = requests.size();
  for (const Request& r : requests) {
    EXPECT_EQ(engine.submit(r, [shared](const RequestOutput& out) {
                std::lock_guard<std::mutex> lock(shared->mutex);
                collect({out}, shared->streams);
                if (out.finished && --shared->left == 0) shared->done.set_value(shared->streams);
              }),
              AsyncEngine::SubmitResult::kAccepted);
  }
  return shared->done.get_future();
}

// Blocks in use once the loop has published the stats of its last step
// (outputs reach the sinks just before).
int used_blocks_when_settled(AsyncEngine& engine) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (engine.stats().num_used_blocks != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return engine.stats().num_used_blocks;
}

TEST(LiveSwitch, SwapRefusedByTheNewEngineLeavesEveryRequestOnTheOld) {
  TestModel m = load_stories();
  std::vector<Request> requests = mixed_requests(*m.tokenizer);
  for (Request& r : requests) r.sampling.max_tokens += 40;  // none fits 32 tokens of context
  LLMEngine reference(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  const Streams want = run_moving({&reference}, requests, 1);

  CpuBackend other_backend(*m.pool);
  LLMEngine engine(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  LLMEngine tiny(*m.model, *m.tokenizer, other_backend, small_engine_config(2));  // 32 tokens of context
  AsyncEngine loop(engine, 256);
  std::future<Streams> got = submit_all(loop, requests);
  // Once every request runs (none waits), the swap finds them all.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((loop.stats().num_waiting > 0 || loop.stats().num_running == 0) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  EXPECT_THROW(loop.swap_engine([&](LLMEngine&) -> LLMEngine& { return tiny; }), Error);
  expect_same_streams(got.get(), want);
  EXPECT_FALSE(tiny.has_unfinished());
}

TEST(LiveSwitch, RuntimeSwitchesLayoutsUnderLoadWithIdenticalOutputs) {
  Runtime rt;
  const std::vector<Request> requests = mixed_requests(*rt.m.tokenizer);
  const Streams want = submit_all(rt.runtime->engine(), requests).get();

  std::future<Streams> got = submit_all(rt.runtime->engine(), requests);
  int switches = 0;
  uint64_t moved = 0;
  const std::vector<ConfigChange> cycle = {{.pp = 2}, {.pp = 1, .dp = 2}, {.dp = 1, .max_num_seqs = 3},
                                           {.max_num_seqs = 64}};
  while (got.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    const SwitchRecord r = rt.runtime->wait_for(rt.runtime->request_switch(cycle[size_t(switches) % cycle.size()], "test"));
    ASSERT_EQ(r.outcome, "done") << r.error;
    moved += r.requests_moved;
    ++switches;
  }
  expect_same_streams(got.get(), want);
  EXPECT_GE(switches, 2);
  EXPECT_GT(moved, 0u);
  EXPECT_EQ(used_blocks_when_settled(rt.runtime->engine()), 0);
  EXPECT_EQ(rt.runtime->num_switches("done"), uint64_t(switches));
}

TEST(LiveSwitch, ImpossibleConfigurationsAreRefusedBeforeAnythingChanges) {
  Runtime rt;
  EXPECT_THROW(rt.runtime->request_switch({.tp = 3}, "test"), Error);  // 4 KV heads
  EXPECT_THROW(rt.runtime->request_switch({.variant = "int3"}, "test"), Error);
  EXPECT_THROW(rt.runtime->request_switch({.max_num_seqs = 0}, "test"), Error);
  EXPECT_EQ(rt.runtime->config().variant, "base");
  EXPECT_TRUE(rt.runtime->switches().empty());
}

TEST(LiveSwitch, SecondSwitchWhileOneIsInProgressIsAConflict) {
  Runtime rt;
  // Holding the pool's turn keeps the engine loop inside a step, so the
  // switch, once prepared, waits at the step boundary for as long as needed.
  rt.turns.acquire();
  std::future<Streams> got = submit_all(rt.runtime->engine(), {greedy_request("r", {1, 2, 3}, 8)});
  const uint64_t id = rt.runtime->request_switch({.variant = "int8"}, "test");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (rt.runtime->state() != ServingState::kSwitching && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(rt.runtime->state(), ServingState::kSwitching);
  EXPECT_THROW(rt.runtime->request_switch({.variant = "f16"}, "test"), SwitchConflict);
  rt.turns.release();
  EXPECT_EQ(rt.runtime->wait_for(id).outcome, "done");
  EXPECT_EQ(got.get().size(), 1u);
  EXPECT_EQ(rt.runtime->switches().size(), 1u);
  EXPECT_EQ(rt.runtime->config().variant, "int8");
}

TEST(LiveSwitch, MemoryLimitFreesTheOldConfigurationFirstOrRefusesWhatNeverFits) {
  // Room for one 8 MiB pool and a variant of stories260K, not for two pools.
  Runtime rt(size_t(12) << 20);
  const std::vector<Request> requests = mixed_requests(*rt.m.tokenizer);
  const Streams want = submit_all(rt.runtime->engine(), requests).get();

  std::future<Streams> got = submit_all(rt.runtime->engine(), requests);
  // stories260K is f32: its f32 variant is the same model in weights of its own.
  const SwitchRecord r = rt.runtime->wait_for(rt.runtime->request_switch({.variant = "f32"}, "test"));
  EXPECT_EQ(r.outcome, "done") << r.error;
  EXPECT_TRUE(r.freed_old_first);
  expect_same_streams(got.get(), want);
  EXPECT_EQ(rt.runtime->config().variant, "f32");

  // Two pipeline stages hold a full 8 MiB pool each: 16 MiB can never fit.
  const SwitchRecord big = rt.runtime->wait_for(rt.runtime->request_switch({.pp = 2}, "test"));
  EXPECT_EQ(big.outcome, "failed");
  EXPECT_NE(big.error.find("--memory-limit-mb"), std::string::npos) << big.error;
  EXPECT_EQ(rt.runtime->config().layout.pp, 1);
  EXPECT_EQ(rt.runtime->num_switches("failed"), 1u);
}

TEST(LiveSwitch, KnobSwitchRetunesTheSchedulerInPlaceWithoutMovingRequests) {
  Runtime rt;
  const std::vector<Request> requests = mixed_requests(*rt.m.tokenizer);
  const Streams want = submit_all(rt.runtime->engine(), requests).get();

  std::future<Streams> got = submit_all(rt.runtime->engine(), requests);
  for (const ConfigChange& change : {ConfigChange{.max_num_seqs = 2}, ConfigChange{.max_num_batched_tokens = 7},
                                     ConfigChange{.max_num_seqs = 64, .max_num_batched_tokens = 2048}}) {
    const SwitchRecord r = rt.runtime->wait_for(rt.runtime->request_switch(change, "test"));
    EXPECT_EQ(r.outcome, "done") << r.error;
    EXPECT_EQ(r.kind, "knobs");
    EXPECT_EQ(r.requests_moved, 0u);
  }
  // Batch limits change which sequences share a step, never a token.
  expect_same_streams(got.get(), want);
  EXPECT_EQ(rt.runtime->config().max_num_batched_tokens, 2048);
  EXPECT_EQ(used_blocks_when_settled(rt.runtime->engine()), 0);
}

TEST(LiveSwitch, VariantSwitchMidStreamKeepsEveryTokenOnce) {
  Runtime rt;
  std::vector<Request> requests = mixed_requests(*rt.m.tokenizer);
  std::future<Streams> got = submit_all(rt.runtime->engine(), requests);
  for (const char* variant : {"int8", "f16", "w4a16-g32", "base"}) {
    const SwitchRecord r = rt.runtime->wait_for(rt.runtime->request_switch({.variant = variant}, "test"));
    EXPECT_EQ(r.outcome, "done") << r.error;
  }
  const Streams streams = got.get();
  for (const Request& r : requests) {
    int total = 0;
    for (int i = 0; i < r.sampling.n; ++i) {
      const Stream& s = streams.at({r.id, i});
      EXPECT_FALSE(s.finish.empty()) << r.id;
      if (r.sampling.stop.empty()) {
        EXPECT_EQ(int(s.tokens.size()), r.sampling.max_tokens) << r.id;
      }
      total += int(s.tokens.size());
    }
    EXPECT_EQ(streams.at({r.id, 0}).completion_tokens, total) << r.id;
  }
  EXPECT_EQ(used_blocks_when_settled(rt.runtime->engine()), 0);
}

}  // namespace
}  // namespace tidal::test
