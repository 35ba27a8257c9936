// SQLite-backed Store. Every write is one transaction, so a crash leaves either the old or
// the new row, never half of one. WAL mode lets readers proceed during writes.
#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "polytune/common/metrics_record.h"
#include "polytune/coordinator/store.h"

namespace polytune::coordinator {
namespace {

const char* kSchema = R"sql(
PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, priority INTEGER NOT NULL, sequence INTEGER NOT NULL,
  world_size INTEGER NOT NULL, spec_yaml TEXT NOT NULL, state INTEGER NOT NULL, reason TEXT NOT NULL,
  submitted_micros INTEGER NOT NULL, assigned_workers TEXT NOT NULL, master_port INTEGER NOT NULL DEFAULT 0,
  attempt INTEGER NOT NULL DEFAULT 0, model TEXT NOT NULL DEFAULT '', max_restarts INTEGER NOT NULL DEFAULT 3,
  preemptible INTEGER NOT NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0,
  not_before_micros INTEGER NOT NULL DEFAULT 0, resume_step INTEGER NOT NULL DEFAULT 0,
  resume_sha256 TEXT NOT NULL DEFAULT '', stop_reason TEXT NOT NULL DEFAULT '', owner TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS job_events (
  job_id TEXT NOT NULL, idx INTEGER NOT NULL, time_micros INTEGER NOT NULL, state INTEGER NOT NULL,
  reason TEXT NOT NULL, PRIMARY KEY (job_id, idx));
CREATE TABLE IF NOT EXISTS workers (
  id TEXT PRIMARY KEY, incarnation TEXT NOT NULL, address TEXT NOT NULL, devices TEXT NOT NULL,
  last_heartbeat_micros INTEGER NOT NULL, alive INTEGER NOT NULL, rendezvous_port_first INTEGER NOT NULL DEFAULT 29600,
  rendezvous_port_count INTEGER NOT NULL DEFAULT 100, draining INTEGER NOT NULL DEFAULT 0,
  registered_by TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS artifact_owners (sha256 TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (sha256, owner));
-- One metrics record per row: `json` holds it in the format `version` names (1: the
-- metrics.jsonl line, MetricsRecordToJson), read back only through MetricsRecordFromJson.
-- `step` and `is_eval` repeat the record's identity for deduplication and restarts (-1 in
-- rows from before they existed); `is_eval` holds MetricsRecord::kind() (0 step, 1 eval,
-- 2 data preparation), whose first two values are the old booleans.
CREATE TABLE IF NOT EXISTS metrics (job_id TEXT NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT, json TEXT NOT NULL,
  version INTEGER NOT NULL DEFAULT 1, step INTEGER NOT NULL DEFAULT -1, is_eval INTEGER NOT NULL DEFAULT -1,
  attempt INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS metrics_by_job ON metrics (job_id, seq);
CREATE TABLE IF NOT EXISTS logs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, rank INTEGER NOT NULL, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_job ON logs (job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
  job_id TEXT NOT NULL, step INTEGER NOT NULL, sha256 TEXT NOT NULL, size_bytes INTEGER NOT NULL,
  artifact TEXT NOT NULL, PRIMARY KEY (job_id, step));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
)sql";

constexpr int64_t kMetricsJsonVersion = 1;

// The JSON columns are written by this file only; reading them back never throws.
absl::StatusOr<std::vector<Device>> ParseDevices(const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return absl::InvalidArgumentError("devices is not a JSON array");
  std::vector<Device> out;
  for (const auto& d : j) {
    if (!d.is_object() || !d.contains("kind") || !d["kind"].is_string() || !d.contains("index") ||
        !d["index"].is_number_integer() || !d.contains("memory_bytes") || !d["memory_bytes"].is_number_integer())
      return absl::InvalidArgumentError("a device lacks kind, index or memory_bytes");
    out.push_back({d["kind"].get<std::string>(), d["index"].get<int32_t>(), d["memory_bytes"].get<int64_t>()});
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ParseStringList(const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return absl::InvalidArgumentError("assigned_workers is not a JSON array");
  std::vector<std::string> out;
  for (const auto& v : j) {
    if (!v.is_string()) return absl::InvalidArgumentError("assigned_workers holds a non-string");
    out.push_back(v.get<std::string>());
  }
  return out;
}

class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  Statement& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int i) const {
    const unsigned char* t = sqlite3_column_text(stmt_, i);
    return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(stmt_, i)) : std::string();
  }
  int64_t Int(int i) const { return sqlite3_column_int64(stmt_, i); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

class SqliteStore : public Store {
 public:
  SqliteStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~SqliteStore() override { sqlite3_close(db_); }

  absl::Status PutJob(const Job& j) override {
    absl::MutexLock l(&mu_);
    return InTransaction([&]() -> absl::Status {
      Statement s(
          db_,
          "INSERT OR REPLACE INTO jobs (id, name, priority, sequence, world_size, spec_yaml, state, reason, "
          "submitted_micros, assigned_workers, master_port, attempt, model, max_restarts, preemptible, restarts, "
          "not_before_micros, resume_step, resume_sha256, stop_reason, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
          "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)");
      s.Bind(1, j.id).Bind(2, j.name).Bind(3, int64_t{j.priority}).Bind(4, j.sequence).Bind(5, int64_t{j.world_size});
      s.Bind(6, j.spec_yaml).Bind(7, static_cast<int64_t>(j.state)).Bind(8, j.reason).Bind(9, j.submitted_micros);
      s.Bind(10, nlohmann::json(j.assigned_workers).dump())
          .Bind(11, int64_t{j.master_port})
          .Bind(12, int64_t{j.attempt})
          .Bind(13, j.model);
      s.Bind(14, int64_t{j.max_restarts}).Bind(15, int64_t{j.preemptible ? 1 : 0}).Bind(16, int64_t{j.restarts});
      s.Bind(17, j.not_before_micros).Bind(18, j.resume_step).Bind(19, j.resume_sha256).Bind(20, j.stop_reason);
      s.Bind(21, j.owner);
      if (s.Step() != SQLITE_DONE) return Error("write job");
      Statement del(db_, "DELETE FROM job_events WHERE job_id = ?1");
      del.Bind(1, j.id);
      if (del.Step() != SQLITE_DONE) return Error("write job events");
      for (size_t i = 0; i < j.events.size(); ++i) {
        Statement e(db_,
                    "INSERT INTO job_events (job_id, idx, time_micros, state, reason) VALUES (?1, ?2, ?3, ?4, ?5)");
        e.Bind(1, j.id).Bind(2, static_cast<int64_t>(i)).Bind(3, j.events[i].time_micros);
        e.Bind(4, static_cast<int64_t>(j.events[i].state)).Bind(5, j.events[i].reason);
        if (e.Step() != SQLITE_DONE) return Error("write job event");
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::optional<Job>> GetJob(const std::string& id) override {
    auto jobs = Query("WHERE id = ?1", id);
    if (!jobs.ok()) return jobs.status();
    if (jobs->empty()) return std::optional<Job>();
    return std::optional<Job>((*jobs)[0]);
  }

  absl::StatusOr<std::vector<Job>> ListJobs() override { return Query("", ""); }

  absl::StatusOr<int64_t> NextJobSequence() override {
    absl::MutexLock l(&mu_);
    int64_t value = 0;
    absl::Status st = InTransaction([&]() -> absl::Status {
      Statement up(db_,
                   "INSERT INTO counters (name, value) VALUES ('job_sequence', 1) "
                   "ON CONFLICT(name) DO UPDATE SET value = value + 1");
      if (up.Step() != SQLITE_DONE) return Error("bump job sequence");
      Statement q(db_, "SELECT value FROM counters WHERE name = 'job_sequence'");
      if (q.Step() != SQLITE_ROW) return Error("read job sequence");
      value = q.Int(0);
      return absl::OkStatus();
    });
    if (!st.ok()) return st;
    return value;
  }

  absl::Status PutWorker(const Worker& w) override {
    absl::MutexLock l(&mu_);
    nlohmann::json devices = nlohmann::json::array();
    for (const auto& d : w.devices)
      devices.push_back({{"kind", d.kind}, {"index", d.index}, {"memory_bytes", d.memory_bytes}});
    Statement s(db_,
                "INSERT OR REPLACE INTO workers (id, incarnation, address, devices, last_heartbeat_micros, alive, "
                "rendezvous_port_first, rendezvous_port_count, draining, registered_by) VALUES (?1, ?2, ?3, ?4, ?5, "
                "?6, ?7, ?8, ?9, ?10)");
    s.Bind(1, w.id).Bind(2, w.incarnation).Bind(3, w.address).Bind(4, devices.dump()).Bind(5, w.last_heartbeat_micros);
    s.Bind(6, int64_t{w.alive ? 1 : 0})
        .Bind(7, int64_t{w.rendezvous_port_first})
        .Bind(8, int64_t{w.rendezvous_port_count})
        .Bind(9, int64_t{w.draining ? 1 : 0})
        .Bind(10, w.registered_by);
    if (s.Step() != SQLITE_DONE) return Error("write worker");
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<Worker>> ListWorkers() override {
    absl::MutexLock l(&mu_);
    Statement s(db_,
                "SELECT id, incarnation, address, devices, last_heartbeat_micros, alive, rendezvous_port_first, "
                "rendezvous_port_count, draining, registered_by FROM workers ORDER BY id");
    std::vector<Worker> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      Worker w;
      w.id = s.Text(0);
      w.incarnation = s.Text(1);
      w.address = s.Text(2);
      auto devices = ParseDevices(s.Text(3));
      if (!devices.ok())
        return absl::DataLossError(
            absl::StrCat(path_, ": worker ", w.id, " row is corrupt: ", devices.status().message()));
      w.devices = *std::move(devices);
      w.last_heartbeat_micros = s.Int(4);
      w.alive = s.Int(5) != 0;
      w.rendezvous_port_first = static_cast<int32_t>(s.Int(6));
      w.rendezvous_port_count = static_cast<int32_t>(s.Int(7));
      w.draining = s.Int(8) != 0;
      w.registered_by = s.Text(9);
      out.push_back(std::move(w));
    }
    if (rc != SQLITE_DONE) return Error("read workers");
    return out;
  }

  absl::Status AppendMetrics(const std::string& job_id, int32_t attempt,
                             const std::vector<MetricsRecord>& records) override {
    absl::MutexLock l(&mu_);
    return InTransaction([&]() -> absl::Status {
      for (const auto& r : records) {
        Statement seen(db_, "SELECT 1 FROM metrics WHERE job_id = ?1 AND step = ?2 AND is_eval = ?3 LIMIT 1");
        seen.Bind(1, job_id).Bind(2, r.step()).Bind(3, int64_t{r.kind()});
        const int rc = seen.Step();
        if (rc == SQLITE_ROW) continue;
        if (rc != SQLITE_DONE) return Error("look up metrics record");
        Statement s(db_,
                    "INSERT INTO metrics (job_id, json, version, step, is_eval, attempt) VALUES (?1, ?2, ?3, ?4, ?5, "
                    "?6)");
        s.Bind(1, job_id).Bind(2, MetricsRecordToJson(r)).Bind(3, kMetricsJsonVersion);
        s.Bind(4, r.step()).Bind(5, int64_t{r.kind()}).Bind(6, int64_t{attempt});
        if (s.Step() != SQLITE_DONE) return Error("write metrics record");
      }
      return absl::OkStatus();
    });
  }

  absl::Status DropMetricsAfter(const std::string& job_id, int64_t step) override {
    absl::MutexLock l(&mu_);
    Statement s(db_, "DELETE FROM metrics WHERE job_id = ?1 AND step > ?2");
    s.Bind(1, job_id).Bind(2, step);
    if (s.Step() != SQLITE_DONE) return Error("drop superseded metrics records");
    return absl::OkStatus();
  }

  absl::Status AppendLogs(const std::string& job_id, int32_t rank, const std::vector<std::string>& lines) override {
    absl::MutexLock l(&mu_);
    return InTransaction([&]() -> absl::Status {
      for (const auto& line : lines) {
        Statement s(db_, "INSERT INTO logs (job_id, rank, line) VALUES (?1, ?2, ?3)");
        s.Bind(1, job_id).Bind(2, int64_t{rank}).Bind(3, line);
        if (s.Step() != SQLITE_DONE) return Error("write log line");
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<LogLine>> Logs(const std::string& job_id, int64_t after_seq, int64_t limit) override {
    absl::MutexLock l(&mu_);
    Statement s(db_, "SELECT seq, rank, line FROM logs WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3");
    s.Bind(1, job_id).Bind(2, after_seq).Bind(3, limit);
    std::vector<LogLine> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) out.push_back({s.Int(0), static_cast<int32_t>(s.Int(1)), s.Text(2)});
    if (rc != SQLITE_DONE) return Error("read log lines");
    return out;
  }

  absl::StatusOr<std::vector<StoredMetricsRecord>> Metrics(const std::string& job_id, int64_t after_seq,
                                                           int64_t limit) override {
    absl::MutexLock l(&mu_);
    Statement s(db_,
                "SELECT seq, json, version, attempt FROM metrics WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3");
    s.Bind(1, job_id).Bind(2, after_seq).Bind(3, limit);
    std::vector<StoredMetricsRecord> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      const int64_t seq = s.Int(0);
      if (s.Int(2) != kMetricsJsonVersion)
        return absl::DataLossError(absl::StrCat(path_, ": metrics row ", seq, " of ", job_id, " has format version ",
                                                s.Int(2), ", which this coordinator cannot read; upgrade it"));
      auto record = MetricsRecordFromJson(s.Text(1));
      if (!record.ok())
        return absl::DataLossError(
            absl::StrCat(path_, ": metrics row ", seq, " of ", job_id, " is corrupt: ", record.status().message()));
      out.push_back({seq, static_cast<int32_t>(s.Int(3)), *std::move(record)});
    }
    if (rc != SQLITE_DONE) return Error("read metrics");
    return out;
  }

  absl::Status AddArtifactOwner(const std::string& sha256, const std::string& owner) override {
    absl::MutexLock l(&mu_);
    Statement s(db_, "INSERT OR IGNORE INTO artifact_owners (sha256, owner) VALUES (?1, ?2)");
    s.Bind(1, sha256).Bind(2, owner);
    if (s.Step() != SQLITE_DONE) return Error("write artifact owner");
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ArtifactOwners(const std::string& sha256) override {
    absl::MutexLock l(&mu_);
    Statement s(db_, "SELECT owner FROM artifact_owners WHERE sha256 = ?1 ORDER BY owner");
    s.Bind(1, sha256);
    std::vector<std::string> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) out.push_back(s.Text(0));
    if (rc != SQLITE_DONE) return Error("read artifact owners");
    return out;
  }

  absl::Status PutCheckpoint(const CheckpointRecord& r) override {
    absl::MutexLock l(&mu_);
    Statement s(
        db_,
        "INSERT OR REPLACE INTO checkpoints (job_id, step, sha256, size_bytes, artifact) VALUES (?1, ?2, ?3, ?4, ?5)");
    s.Bind(1, r.job_id).Bind(2, r.step).Bind(3, r.sha256).Bind(4, r.size_bytes).Bind(5, r.artifact);
    if (s.Step() != SQLITE_DONE) return Error("write checkpoint record");
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<CheckpointRecord>> Checkpoints(const std::string& job_id) override {
    absl::MutexLock l(&mu_);
    Statement s(db_,
                "SELECT job_id, step, sha256, size_bytes, artifact FROM checkpoints WHERE job_id = ?1 ORDER BY step");
    s.Bind(1, job_id);
    std::vector<CheckpointRecord> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) out.push_back({s.Text(0), s.Int(1), s.Text(2), s.Int(3), s.Text(4)});
    if (rc != SQLITE_DONE) return Error("read checkpoints");
    return out;
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InternalError(absl::StrCat(path_, ": cannot ", what, ": ", sqlite3_errmsg(db_)));
  }

  template <typename F>
  absl::Status InTransaction(F body) {
    if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) return Error("begin transaction");
    absl::Status st = body();
    if (!st.ok()) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return st;
    }
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) return Error("commit");
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<Job>> Query(const std::string& where, const std::string& arg) {
    absl::MutexLock l(&mu_);
    const std::string sql = absl::StrCat(
        "SELECT id, name, priority, sequence, world_size, spec_yaml, state, reason, submitted_micros, "
        "assigned_workers, "
        "master_port, attempt, model, max_restarts, preemptible, restarts, not_before_micros, resume_step, "
        "resume_sha256, stop_reason, owner FROM jobs ",
        where, " ORDER BY sequence");
    Statement s(db_, sql.c_str());
    if (!where.empty()) s.Bind(1, arg);
    std::vector<Job> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      Job j;
      j.id = s.Text(0);
      j.name = s.Text(1);
      j.priority = static_cast<int32_t>(s.Int(2));
      j.sequence = s.Int(3);
      j.world_size = static_cast<int32_t>(s.Int(4));
      j.spec_yaml = s.Text(5);
      j.state = static_cast<JobState>(s.Int(6));
      j.reason = s.Text(7);
      j.submitted_micros = s.Int(8);
      auto workers = ParseStringList(s.Text(9));
      if (!workers.ok())
        return absl::DataLossError(
            absl::StrCat(path_, ": job ", j.id, " row is corrupt: ", workers.status().message()));
      j.assigned_workers = *std::move(workers);
      j.master_port = static_cast<int32_t>(s.Int(10));
      j.attempt = static_cast<int32_t>(s.Int(11));
      j.model = s.Text(12);
      j.max_restarts = static_cast<int32_t>(s.Int(13));
      j.preemptible = s.Int(14) != 0;
      j.restarts = static_cast<int32_t>(s.Int(15));
      j.not_before_micros = s.Int(16);
      j.resume_step = s.Int(17);
      j.resume_sha256 = s.Text(18);
      j.stop_reason = s.Text(19);
      j.owner = s.Text(20);
      out.push_back(std::move(j));
    }
    if (rc != SQLITE_DONE) return Error("read jobs");
    for (auto& j : out) {
      Statement e(db_, "SELECT time_micros, state, reason FROM job_events WHERE job_id = ?1 ORDER BY idx");
      e.Bind(1, j.id);
      while ((rc = e.Step()) == SQLITE_ROW) j.events.push_back({e.Int(0), static_cast<JobState>(e.Int(1)), e.Text(2)});
      if (rc != SQLITE_DONE) return Error("read job events");
    }
    return out;
  }

  sqlite3* db_;  // serialised by mu_: one statement at a time on the connection
  std::string path_;
  absl::Mutex mu_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) !=
      SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot open database: ", msg, "; check --data-dir and its permissions"));
  }
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
  if (sqlite3_exec(db, kSchema, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    sqlite3_close(db);
    return absl::DataLossError(absl::StrCat(path, ": not a usable Polytune database (", msg, ")"));
  }
  // Databases from before a column existed get it, with its default.
  const struct {
    const char* table;
    const char* column;
    const char* definition;
  } kAddedColumns[] = {
      {"jobs", "master_port", "INTEGER NOT NULL DEFAULT 0"},
      {"jobs", "attempt", "INTEGER NOT NULL DEFAULT 0"},
      {"workers", "rendezvous_port_first", "INTEGER NOT NULL DEFAULT 29600"},
      {"workers", "rendezvous_port_count", "INTEGER NOT NULL DEFAULT 100"},
      {"metrics", "version", "INTEGER NOT NULL DEFAULT 1"},
      {"jobs", "model", "TEXT NOT NULL DEFAULT ''"},
      {"jobs", "max_restarts", "INTEGER NOT NULL DEFAULT 3"},
      {"jobs", "preemptible", "INTEGER NOT NULL DEFAULT 0"},
      {"jobs", "restarts", "INTEGER NOT NULL DEFAULT 0"},
      {"jobs", "not_before_micros", "INTEGER NOT NULL DEFAULT 0"},
      {"jobs", "resume_step", "INTEGER NOT NULL DEFAULT 0"},
      {"jobs", "resume_sha256", "TEXT NOT NULL DEFAULT ''"},
      {"jobs", "stop_reason", "TEXT NOT NULL DEFAULT ''"},
      {"workers", "draining", "INTEGER NOT NULL DEFAULT 0"},
      {"workers", "registered_by", "TEXT NOT NULL DEFAULT ''"},
      {"jobs", "owner", "TEXT NOT NULL DEFAULT ''"},
      {"metrics", "step", "INTEGER NOT NULL DEFAULT -1"},
      {"metrics", "is_eval", "INTEGER NOT NULL DEFAULT -1"},
      {"metrics", "attempt", "INTEGER NOT NULL DEFAULT 0"},
  };
  for (const auto& c : kAddedColumns) {
    bool present = false;
    {
      Statement info(db, absl::StrCat("PRAGMA table_info(", c.table, ")").c_str());
      while (info.Step() == SQLITE_ROW) present = present || info.Text(1) == c.column;
    }
    if (present) continue;
    const std::string alter = absl::StrCat("ALTER TABLE ", c.table, " ADD COLUMN ", c.column, " ", c.definition);
    if (sqlite3_exec(db, alter.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      sqlite3_close(db);
      return absl::DataLossError(absl::StrCat(path, ": cannot upgrade the database schema (", msg, ")"));
    }
  }
  // After the upgrade: older databases only now have the columns it covers.
  if (sqlite3_exec(db, "CREATE INDEX IF NOT EXISTS metrics_by_job_step ON metrics (job_id, step)", nullptr, nullptr,
                   &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    sqlite3_close(db);
    return absl::DataLossError(absl::StrCat(path, ": cannot index metrics (", msg, ")"));
  }
  return std::unique_ptr<Store>(new SqliteStore(db, path));
}

}  // namespace polytune::coordinator
