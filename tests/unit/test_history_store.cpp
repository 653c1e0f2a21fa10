// The reconfigurator's history file (reconfig/history_store.h): every row
// kind reads back as written, also after reopening; model keys sharing a
// file never see each other's rows; the bounds drop the oldest rows of
// their own scope only; files it must not use are refused with an Error.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "reconfig/history_store.h"

namespace tidal {
namespace {

namespace fs = std::filesystem;

using Decisions = std::vector<std::pair<int64_t, std::string>>;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

auto fields(const StepProfile& p) {
  return std::tie(p.variant, p.layout, p.a_seconds, p.b_seconds_per_token, p.observations, p.source, p.measured_at_ms);
}
auto fields(const ShadowScore& s) {
  return std::tie(s.variant, s.positions, s.top1_matches, s.kl_sum, s.greedy_agree, s.scored_at_ms);
}
auto fields(const WorkloadSample& w) {
  return std::tie(w.at_ms, w.config, w.arrival_rps, w.goodput_rps, w.ttft_p95_ms, w.tpot_p95_ms, w.e2e_p95_ms,
                  w.waiting, w.running, w.kv_usage);
}

template <class Row>
void expect_rows(const std::vector<Row>& got, const std::vector<Row>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(fields(got[i]), fields(want[i])) << "row " << i;
}

ShadowScore score(const std::string& variant, int64_t at_ms) {
  return {.variant = variant, .positions = 100 + at_ms, .top1_matches = 90, .kl_sum = 0.25 + double(at_ms),
          .greedy_agree = at_ms % 2 == 0, .scored_at_ms = at_ms};
}

WorkloadSample sample(int64_t at_ms, const std::string& config) {
  return {.at_ms = at_ms, .config = config, .arrival_rps = 1.5, .goodput_rps = 1.25, .ttft_p95_ms = 120.5,
          .tpot_p95_ms = 33.25, .e2e_p95_ms = 2048, .waiting = 3, .running = 7, .kv_usage = 0.625};
}

std::vector<int64_t> times_of(const std::vector<ShadowScore>& scores, const std::string& variant) {
  std::vector<int64_t> out;
  for (const auto& s : scores) {
    if (s.variant == variant) out.push_back(s.scored_at_ms);
  }
  return out;
}

// A fresh directory per test (and process: others may run the suite at the
// same time), removed afterwards.
class HistoryStoreFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("history_store_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "history.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `sql` on the file directly, as another program could.
  void run_sql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    EXPECT_EQ(rc, SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  fs::path dir_;
  std::string path_;
};

const std::string kModel = "SmolLM2-135M-Instruct.Q4_1.gguf:97648704";
const std::string kOtherModel = "stories260K.bin:1185376";

// One store's worth of every row kind, as `fill` writes it.
struct Written {
  std::vector<StepProfile> profiles;
  std::vector<ShadowScore> scores;
  std::vector<WorkloadSample> workload;
  Decisions decisions;
};

Written fill(HistoryStore& store, const std::string& tag) {
  Written w;
  // Listed in the order step_profiles() returns them: by variant, layout, source.
  w.profiles = {
      {.variant = "base", .layout = "tp1 pp1 dp1", .a_seconds = 0.0125, .b_seconds_per_token = 1.5e-5,
       .observations = 412, .source = "live", .measured_at_ms = 1700000000123},
      {.variant = "int8", .layout = "tp1 pp1 dp1", .a_seconds = 0.008, .b_seconds_per_token = 9.75e-6,
       .observations = 64, .source = "calibration", .measured_at_ms = 1700000000456},
      {.variant = "int8", .layout = "tp2 pp1 dp1", .a_seconds = 0.006, .b_seconds_per_token = 5.5e-6,
       .observations = 8, .source = "calibration", .measured_at_ms = 1700000000789},
  };
  for (auto it = w.profiles.rbegin(); it != w.profiles.rend(); ++it) store.put_step_profile(*it);
  w.scores = {score("int8", 10), score("int4", 11), score("int8", 12)};
  for (const auto& s : w.scores) store.add_shadow_score(s);
  w.workload = {sample(1000, tag + " base tp1"), sample(2000, tag + " int8 tp1"), sample(3000, tag + " int8 tp2")};
  for (const auto& s : w.workload) store.add_workload(s);
  w.decisions = {{1500, R"({"switch":"int8","why":")" + tag + R"("})"}, {2500, R"({"keep":true})"}};
  for (const auto& [at, json] : w.decisions) store.add_decision(at, json);
  return w;
}

void expect_holds(const HistoryStore& store, const Written& w) {
  expect_rows(store.step_profiles(), w.profiles);
  expect_rows(store.shadow_scores(), w.scores);
  expect_rows(store.workload_since(0), w.workload);
  EXPECT_EQ(store.decisions(100), w.decisions);
}

TEST_F(HistoryStoreFile, EveryRowKindReadsBackAsWritten) {
  HistoryStore store(path_, kModel);
  EXPECT_EQ(store.path(), path_);
  EXPECT_TRUE(store.step_profiles().empty());
  EXPECT_TRUE(store.shadow_scores().empty());
  EXPECT_TRUE(store.workload_since(0).empty());
  EXPECT_TRUE(store.decisions(10).empty());

  const Written w = fill(store, "a");
  expect_holds(store, w);

  // since is inclusive; decisions(limit) is the newest `limit`, oldest first.
  expect_rows(store.workload_since(2000), {w.workload[1], w.workload[2]});
  expect_rows(store.workload_since(3001), {});
  EXPECT_EQ(store.decisions(1), std::vector({w.decisions[1]}));
  EXPECT_TRUE(store.decisions(0).empty());
  expect_rows(store.shadow_scores(1), {w.scores[1], w.scores[2]});

  // A window without finished requests has no percentile: NaN in, NaN out.
  WorkloadSample idle = sample(4000, "idle");
  idle.ttft_p95_ms = idle.tpot_p95_ms = idle.e2e_p95_ms = kNaN;
  store.add_workload(idle);
  const auto back = store.workload_since(4000);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_TRUE(std::isnan(back[0].ttft_p95_ms) && std::isnan(back[0].tpot_p95_ms) && std::isnan(back[0].e2e_p95_ms));
  EXPECT_EQ(back[0].config, "idle");
  EXPECT_EQ(back[0].kv_usage, idle.kv_usage);
}

TEST_F(HistoryStoreFile, ReopeningTheFileKeepsEverything) {
  Written w;
  {
    HistoryStore store(path_, kModel);
    w = fill(store, "before restart");
  }
  HistoryStore reopened(path_, kModel);
  expect_holds(reopened, w);
  // Appending after a reopen continues where the file left off.
  reopened.add_decision(3500, "{}");
  EXPECT_EQ(reopened.decisions(2), Decisions({w.decisions[1], {3500, "{}"}}));
}

TEST_F(HistoryStoreFile, ModelKeysSharingAFileSeeOnlyTheirOwnRows) {
  HistoryStore one(path_, kModel);
  HistoryStore other(path_, kOtherModel);
  const Written w_one = fill(one, "one");
  EXPECT_TRUE(other.step_profiles().empty());
  EXPECT_TRUE(other.shadow_scores().empty());
  EXPECT_TRUE(other.workload_since(0).empty());
  EXPECT_TRUE(other.decisions(100).empty());

  // The same variants, layouts and sources under the other key: no upsert
  // crosses keys, and no per-scope sequence either.
  const Written w_other = fill(other, "other");
  other.put_step_profile({.variant = "base", .layout = "tp1 pp1 dp1", .a_seconds = 1, .b_seconds_per_token = 1,
                          .observations = 1, .source = "live", .measured_at_ms = 1});
  expect_holds(one, w_one);
  EXPECT_EQ(other.step_profiles().front().a_seconds, 1);
  expect_rows(other.shadow_scores(), w_other.scores);
  expect_rows(other.workload_since(0), w_other.workload);
  EXPECT_EQ(other.decisions(100), w_other.decisions);
}

TEST_F(HistoryStoreFile, PutStepProfileReplacesTheSameVariantLayoutAndSource) {
  HistoryStore store(path_, kModel);
  const StepProfile first{.variant = "int8", .layout = "tp1 pp1 dp1", .a_seconds = 0.01, .b_seconds_per_token = 2e-5,
                          .observations = 10, .source = "calibration", .measured_at_ms = 100};
  store.put_step_profile(first);
  StepProfile refit = first;
  refit.a_seconds = 0.009;
  refit.b_seconds_per_token = 1.75e-5;
  refit.observations = 300;
  refit.measured_at_ms = 200;
  store.put_step_profile(refit);
  expect_rows(store.step_profiles(), {refit});

  // Another source or layout is another profile.
  StepProfile live = refit;
  live.source = "live";
  StepProfile tp2 = refit;
  tp2.layout = "tp2 pp1 dp1";
  store.put_step_profile(live);
  store.put_step_profile(tp2);
  expect_rows(store.step_profiles(), {refit, live, tp2});
}

TEST_F(HistoryStoreFile, ShadowScoresKeepTheNewestOfEachVariant) {
  constexpr int64_t kMax = int64_t(HistoryStore::kMaxShadowScoresPerVariant);
  constexpr int64_t kOver = 3;
  HistoryStore store(path_, kModel);
  HistoryStore other(path_, kOtherModel);
  other.add_shadow_score(score("int8", -1));
  for (int64_t i = 0; i < kMax + kOver; ++i) {
    store.add_shadow_score(score("int8", i));
    if (i < 5) store.add_shadow_score(score("int4", i));
  }
  const auto kept = store.shadow_scores(std::numeric_limits<size_t>::max());  // more than the bound, if kept
  const auto int8 = times_of(kept, "int8");
  ASSERT_EQ(int64_t(int8.size()), kMax);
  EXPECT_EQ(int8.front(), kOver);  // the oldest kOver are gone
  EXPECT_EQ(int8.back(), kMax + kOver - 1);
  EXPECT_EQ(times_of(kept, "int4"), std::vector<int64_t>({0, 1, 2, 3, 4}));  // its variant's bound is not reached
  expect_rows(other.shadow_scores(), {score("int8", -1)});                  // nor the other model's

  // A read limit takes the newest per variant, still in the order added.
  expect_rows(store.shadow_scores(2),
              {score("int4", 3), score("int4", 4), score("int8", kMax + kOver - 2), score("int8", kMax + kOver - 1)});
}

TEST_F(HistoryStoreFile, DecisionsKeepTheNewest) {
  constexpr int64_t kMax = int64_t(HistoryStore::kMaxDecisions);
  HistoryStore store(path_, kModel);
  HistoryStore other(path_, kOtherModel);
  other.add_decision(-1, "other");
  for (int64_t i = 0; i < kMax + 2; ++i) store.add_decision(i, std::to_string(i));
  const auto kept = store.decisions(std::numeric_limits<size_t>::max());
  ASSERT_EQ(int64_t(kept.size()), kMax);
  EXPECT_EQ(kept.front(), std::make_pair(int64_t(2), std::string("2")));
  EXPECT_EQ(kept.back().first, kMax + 1);
  EXPECT_EQ(other.decisions(10), Decisions({{-1, "other"}}));
}

TEST_F(HistoryStoreFile, WorkloadKeepsTheNewest) {
  constexpr int64_t kMax = int64_t(HistoryStore::kMaxWorkloadSamples);
  {
    HistoryStore other(path_, kOtherModel);
    other.add_workload(sample(-1, "other"));
  }
  // kMax calls of add_workload would take seconds: write the rows they
  // would have (seq 1..kMax, here at_ms 0..kMax-1) in one statement.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* fill_rows = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) "
                               "INSERT INTO workload (model, seq, at_ms, config) SELECT ?1, i, i - 1, 'bulk' FROM n",
                               -1, &fill_rows, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_bind_text(fill_rows, 1, kModel.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(fill_rows, 2, kMax);
  EXPECT_EQ(sqlite3_step(fill_rows), SQLITE_DONE) << sqlite3_errmsg(db);
  sqlite3_finalize(fill_rows);
  sqlite3_close(db);

  HistoryStore store(path_, kModel);
  ASSERT_EQ(int64_t(store.workload_since(0).size()), kMax);
  store.add_workload(sample(kMax, "new"));
  store.add_workload(sample(kMax + 1, "new"));
  const auto kept = store.workload_since(std::numeric_limits<int64_t>::min());
  ASSERT_EQ(int64_t(kept.size()), kMax);
  EXPECT_EQ(kept.front().at_ms, 2);
  expect_rows(std::vector(kept.end() - 2, kept.end()), {sample(kMax, "new"), sample(kMax + 1, "new")});
  expect_rows(HistoryStore(path_, kOtherModel).workload_since(-1), {sample(-1, "other")});
}

TEST_F(HistoryStoreFile, AFileItCannotOpenIsAnErrorNamingIt) {
  const std::string missing = (dir_ / "no_such_dir" / "history.db").string();
  try {
    HistoryStore store(missing, kModel);
    FAIL() << "opened " << missing;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }

  std::ofstream(path_) << "not a database, but long enough to be mistaken for a header of one: "
                       << std::string(200, 'x');
  try {
    HistoryStore store(path_, kModel);
    FAIL() << "opened a text file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorrupt);
    EXPECT_NE(std::string(e.what()).find(path_), std::string::npos) << e.what();
  }
}

TEST_F(HistoryStoreFile, ANewerSchemaIsRefused) {
  { HistoryStore store(path_, kModel); }
  run_sql("PRAGMA user_version = 2");
  try {
    HistoryStore store(path_, kModel);
    FAIL() << "opened a file of schema version 2";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find(path_), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("version 2"), std::string::npos) << e.what();
  }
}

// The reconfigurator and the shadow scorer write through one store while
// another connection (as another process would) reads the file.
TEST_F(HistoryStoreFile, ThreadsAndASecondConnectionShareTheFile) {
  constexpr int kPerThread = 200;
  HistoryStore store(path_, kModel);
  HistoryStore reader(path_, kModel);
  std::atomic<bool> writing = true;
  std::atomic<int> reads = 0;
  std::thread read_loop([&] {
    while (writing) {
      const size_t n = reader.shadow_scores().size() + reader.workload_since(0).size();
      EXPECT_LE(n, size_t(2 * kPerThread));
      ++reads;
    }
  });
  std::thread scorer([&] {
    for (int i = 0; i < kPerThread; ++i) store.add_shadow_score(score("int8", i));
  });
  for (int i = 0; i < kPerThread; ++i) store.add_workload(sample(i, "base"));
  scorer.join();
  writing = false;
  read_loop.join();
  EXPECT_GT(reads, 0);
  EXPECT_EQ(int(reader.shadow_scores().size()), kPerThread);
  EXPECT_EQ(int(reader.workload_since(0).size()), kPerThread);
}

}  // namespace
}  // namespace tidal
