#include "reconfig/history_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <limits>
#include <type_traits>

#include "core/error.h"

namespace tidal {

namespace {

// PRAGMA user_version of the schema below. A file with a larger one was
// written by a newer tidal, whose rows this code might misread.
constexpr int64_t kSchemaVersion = 1;

// Another process's write transaction lasts milliseconds; waiting this long
// for its lock rides out a slow disk without hanging the reconfigurator.
constexpr int kBusyTimeoutMs = 5000;

// Appended rows carry `seq`, 1 + the largest of their scope (a model, or a
// model's variant). Only the oldest rows are ever deleted, so a scope's seqs
// stay contiguous: its newest n are those with seq > max - n, and both the
// bound on inserts and the per-variant limit on reads are index lookups.
// REAL columns may hold NULL: SQLite stores a NaN that way.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS step_profile (
  model TEXT NOT NULL, variant TEXT NOT NULL, layout TEXT NOT NULL, source TEXT NOT NULL,
  a_seconds REAL, b_seconds_per_token REAL, observations INTEGER NOT NULL, measured_at_ms INTEGER NOT NULL,
  PRIMARY KEY (model, variant, layout, source));
CREATE TABLE IF NOT EXISTS shadow_score (
  id INTEGER PRIMARY KEY, model TEXT NOT NULL, variant TEXT NOT NULL, seq INTEGER NOT NULL,
  positions INTEGER NOT NULL, top1_matches INTEGER NOT NULL, kl_sum REAL, greedy_agree INTEGER NOT NULL,
  scored_at_ms INTEGER NOT NULL,
  UNIQUE (model, variant, seq));
CREATE TABLE IF NOT EXISTS workload (
  model TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, config TEXT NOT NULL,
  arrival_rps REAL, goodput_rps REAL, ttft_p95_ms REAL, tpot_p95_ms REAL, e2e_p95_ms REAL,
  waiting REAL, running REAL, kv_usage REAL,
  UNIQUE (model, seq));
CREATE INDEX IF NOT EXISTS workload_by_time ON workload (model, at_ms);
CREATE TABLE IF NOT EXISTS decision (
  model TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, json_text TEXT NOT NULL,
  UNIQUE (model, seq));
)sql";

ErrorCode error_code(int rc) {
  switch (rc & 0xff) {  // the primary code of an extended one
    case SQLITE_CANTOPEN: return ErrorCode::kNotFound;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT: return ErrorCode::kCorrupt;
    case SQLITE_FULL:
    case SQLITE_NOMEM: return ErrorCode::kResourceExhausted;
    default: return ErrorCode::kInternal;
  }
}

[[noreturn]] void fail(sqlite3* db, int rc, const std::string& path, const std::string& what) {
  throw Error(error_code(rc), "history store " + path + ": " + what + ": " + sqlite3_errmsg(db));
}

void exec(sqlite3* db, const std::string& path, const std::string& sql, const char* what) {
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(db, rc, path, what);
}

// One prepared statement, finalized on every way out.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& path, const char* sql) : db_(db), path_(path) {
    const int rc = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
    if (rc != SQLITE_OK) fail(db, rc, path, "preparing a statement");
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binds ?1, ?2, ... in order.
  template <class... Values>
  Statement& bind(const Values&... values) {
    int index = 0;
    (bind_one(++index, values), ...);
    return *this;
  }

  // Steps once: true when it produced a row.
  bool next_row() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) fail(db_, rc, path_, "running a statement");
    return false;
  }

  int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
  double real(int column) const {
    if (sqlite3_column_type(stmt_, column) == SQLITE_NULL) return std::numeric_limits<double>::quiet_NaN();
    return sqlite3_column_double(stmt_, column);
  }
  std::string text(int column) const {
    const auto* chars = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    return chars ? std::string(chars, size_t(sqlite3_column_bytes(stmt_, column))) : std::string();
  }

 private:
  template <class T>
  void bind_one(int index, const T& value) {
    int rc;
    if constexpr (std::is_same_v<T, std::string>) {
      rc = sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    } else if constexpr (std::is_floating_point_v<T>) {
      rc = sqlite3_bind_double(stmt_, index, double(value));
    } else if constexpr (std::is_unsigned_v<T>) {  // a count: SIZE_MAX means "all"
      constexpr auto kMax = uint64_t(std::numeric_limits<int64_t>::max());
      rc = sqlite3_bind_int64(stmt_, index, int64_t(std::min<uint64_t>(value, kMax)));
    } else {
      static_assert(std::is_integral_v<T>);
      rc = sqlite3_bind_int64(stmt_, index, int64_t(value));
    }
    if (rc != SQLITE_OK) fail(db_, rc, path_, "binding a value");
  }

  sqlite3* db_;
  const std::string& path_;
  sqlite3_stmt* stmt_ = nullptr;
};

// BEGIN IMMEDIATE takes the write lock up front (waiting out another
// process's), so what a transaction reads stays true until it commits.
// Rolled back unless committed.
class WriteTransaction {
 public:
  WriteTransaction(sqlite3* db, const std::string& path) : db_(db), path_(path) {
    exec(db, path, "BEGIN IMMEDIATE", "starting a write");
  }
  ~WriteTransaction() {
    if (!committed_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;

  void commit() {
    exec(db_, path_, "COMMIT", "committing a write");
    committed_ = true;
  }

 private:
  sqlite3* db_;
  const std::string& path_;
  bool committed_ = false;
};

}  // namespace

void HistoryStore::CloseDb::operator()(sqlite3* db) const { sqlite3_close_v2(db); }

HistoryStore::HistoryStore(const std::string& path, std::string model_key)
    : path_(path), model_key_(std::move(model_key)) {
  sqlite3* db = nullptr;
  // Calls take turns under mutex_, so SQLite's own locking is not needed.
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  db_.reset(db);  // a failed open still returns a handle to close (or none, and errmsg says out of memory)
  if (rc != SQLITE_OK) fail(db, rc, path_, "cannot open");
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  // WAL lets another process read while this one writes. With it,
  // synchronous=NORMAL loses no commit when the process dies, only the last
  // ones on a power cut: advisory history, not worth an fsync per row.
  exec(db, path_, "PRAGMA journal_mode = WAL", "setting WAL journaling");
  exec(db, path_, "PRAGMA synchronous = NORMAL", "setting synchronous");

  WriteTransaction tx(db, path_);
  const int64_t found = [&] {
    Statement version(db, path_, "PRAGMA user_version");
    version.next_row();
    return version.integer(0);
  }();
  if (found > kSchemaVersion) {
    throw Error(ErrorCode::kUnsupported, "history store " + path_ + ": schema version " + std::to_string(found) +
                                             " is newer than this tidal's (" + std::to_string(kSchemaVersion) + ")");
  }
  if (found == 0) {  // a new file
    exec(db, path_, kSchema, "creating the schema");
    exec(db, path_, "PRAGMA user_version = " + std::to_string(kSchemaVersion), "setting the schema version");
  }
  tx.commit();
}

HistoryStore::~HistoryStore() = default;

void HistoryStore::put_step_profile(const StepProfile& p) {
  std::lock_guard lock(mutex_);
  Statement(db_.get(), path_,
            "INSERT OR REPLACE INTO step_profile (model, variant, layout, source, a_seconds, b_seconds_per_token, "
            "observations, measured_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
      .bind(model_key_, p.variant, p.layout, p.source, p.a_seconds, p.b_seconds_per_token, p.observations,
            p.measured_at_ms)
      .next_row();
}

std::vector<StepProfile> HistoryStore::step_profiles() const {
  std::lock_guard lock(mutex_);
  Statement rows(db_.get(), path_,
                 "SELECT variant, layout, source, a_seconds, b_seconds_per_token, observations, measured_at_ms "
                 "FROM step_profile WHERE model = ?1 ORDER BY variant, layout, source");
  rows.bind(model_key_);
  std::vector<StepProfile> out;
  while (rows.next_row()) {
    out.push_back({.variant = rows.text(0),
                   .layout = rows.text(1),
                   .a_seconds = rows.real(3),
                   .b_seconds_per_token = rows.real(4),
                   .observations = rows.integer(5),
                   .source = rows.text(2),
                   .measured_at_ms = rows.integer(6)});
  }
  return out;
}

void HistoryStore::add_shadow_score(const ShadowScore& s) {
  std::lock_guard lock(mutex_);
  WriteTransaction tx(db_.get(), path_);
  Statement(db_.get(), path_,
            "INSERT INTO shadow_score (model, variant, seq, positions, top1_matches, kl_sum, greedy_agree, "
            "scored_at_ms) SELECT ?1, ?2, COALESCE(MAX(seq), 0) + 1, ?3, ?4, ?5, ?6, ?7 "
            "FROM shadow_score WHERE model = ?1 AND variant = ?2")
      .bind(model_key_, s.variant, s.positions, s.top1_matches, s.kl_sum, int64_t(s.greedy_agree), s.scored_at_ms)
      .next_row();
  Statement(db_.get(), path_,
            "DELETE FROM shadow_score WHERE model = ?1 AND variant = ?2 AND seq <= "
            "(SELECT MAX(seq) FROM shadow_score WHERE model = ?1 AND variant = ?2) - ?3")
      .bind(model_key_, s.variant, kMaxShadowScoresPerVariant)
      .next_row();
  tx.commit();
}

std::vector<ShadowScore> HistoryStore::shadow_scores(size_t limit_per_variant) const {
  std::lock_guard lock(mutex_);
  Statement rows(db_.get(), path_,
                 "SELECT variant, positions, top1_matches, kl_sum, greedy_agree, scored_at_ms FROM shadow_score AS s "
                 "WHERE model = ?1 AND seq > "
                 "(SELECT MAX(seq) FROM shadow_score WHERE model = ?1 AND variant = s.variant) - ?2 ORDER BY id");
  rows.bind(model_key_, limit_per_variant);
  std::vector<ShadowScore> out;
  while (rows.next_row()) {
    out.push_back({.variant = rows.text(0),
                   .positions = rows.integer(1),
                   .top1_matches = rows.integer(2),
                   .kl_sum = rows.real(3),
                   .greedy_agree = rows.integer(4) != 0,
                   .scored_at_ms = rows.integer(5)});
  }
  return out;
}

void HistoryStore::add_workload(const WorkloadSample& w) {
  std::lock_guard lock(mutex_);
  WriteTransaction tx(db_.get(), path_);
  Statement(db_.get(), path_,
            "INSERT INTO workload (model, seq, at_ms, config, arrival_rps, goodput_rps, ttft_p95_ms, tpot_p95_ms, "
            "e2e_p95_ms, waiting, running, kv_usage) "
            "SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 "
            "FROM workload WHERE model = ?1")
      .bind(model_key_, w.at_ms, w.config, w.arrival_rps, w.goodput_rps, w.ttft_p95_ms, w.tpot_p95_ms, w.e2e_p95_ms,
            w.waiting, w.running, w.kv_usage)
      .next_row();
  Statement(db_.get(), path_,
            "DELETE FROM workload WHERE model = ?1 AND seq <= (SELECT MAX(seq) FROM workload WHERE model = ?1) - ?2")
      .bind(model_key_, kMaxWorkloadSamples)
      .next_row();
  tx.commit();
}

std::vector<WorkloadSample> HistoryStore::workload_since(int64_t since_ms) const {
  std::lock_guard lock(mutex_);
  Statement rows(db_.get(), path_,
                 "SELECT at_ms, config, arrival_rps, goodput_rps, ttft_p95_ms, tpot_p95_ms, e2e_p95_ms, waiting, "
                 "running, kv_usage FROM workload WHERE model = ?1 AND at_ms >= ?2 ORDER BY at_ms, seq");
  rows.bind(model_key_, since_ms);
  std::vector<WorkloadSample> out;
  while (rows.next_row()) {
    out.push_back({.at_ms = rows.integer(0),
                   .config = rows.text(1),
                   .arrival_rps = rows.real(2),
                   .goodput_rps = rows.real(3),
                   .ttft_p95_ms = rows.real(4),
                   .tpot_p95_ms = rows.real(5),
                   .e2e_p95_ms = rows.real(6),
                   .waiting = rows.real(7),
                   .running = rows.real(8),
                   .kv_usage = rows.real(9)});
  }
  return out;
}

void HistoryStore::add_decision(int64_t at_ms, const std::string& json) {
  std::lock_guard lock(mutex_);
  WriteTransaction tx(db_.get(), path_);
  Statement(db_.get(), path_,
            "INSERT INTO decision (model, seq, at_ms, json_text) "
            "SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3 FROM decision WHERE model = ?1")
      .bind(model_key_, at_ms, json)
      .next_row();
  Statement(db_.get(), path_,
            "DELETE FROM decision WHERE model = ?1 AND seq <= (SELECT MAX(seq) FROM decision WHERE model = ?1) - ?2")
      .bind(model_key_, kMaxDecisions)
      .next_row();
  tx.commit();
}

std::vector<std::pair<int64_t, std::string>> HistoryStore::decisions(size_t limit) const {
  std::lock_guard lock(mutex_);
  Statement rows(db_.get(), path_,
                 "SELECT at_ms, json_text FROM decision WHERE model = ?1 AND seq > "
                 "(SELECT MAX(seq) FROM decision WHERE model = ?1) - ?2 ORDER BY seq");
  rows.bind(model_key_, limit);
  std::vector<std::pair<int64_t, std::string>> out;
  while (rows.next_row()) out.emplace_back(rows.integer(0), rows.text(1));
  return out;
}

}  // namespace tidal
