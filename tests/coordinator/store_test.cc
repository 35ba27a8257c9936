#include "polytune/coordinator/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>

namespace polytune::coordinator {
namespace {

Job SampleJob(const std::string& id, int64_t seq) {
  Job j;
  j.id = id;
  j.name = "es-medical";
  j.priority = 3;
  j.sequence = seq;
  j.world_size = 2;
  j.spec_yaml = "model: {path: m}\n";
  j.state = JobState::kRunning;
  j.reason = "running on w1, w2";
  j.submitted_micros = 123;
  j.assigned_workers = {"w1", "w2"};
  j.master_port = 29617;
  j.attempt = 2;
  j.max_restarts = 5;
  j.preemptible = true;
  j.restarts = 1;
  j.not_before_micros = 777;
  j.resume_step = 30;
  j.resume_sha256 = "ab";
  j.stop_reason = "worker w1 is draining";
  j.events = {{100, JobState::kPending, "submitted"},
              {200, JobState::kScheduled, "placed"},
              {300, JobState::kRunning, "ranks up"}};
  return j;
}

void ExpectSameJob(const Job& a, const Job& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.sequence, b.sequence);
  EXPECT_EQ(a.world_size, b.world_size);
  EXPECT_EQ(a.spec_yaml, b.spec_yaml);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.submitted_micros, b.submitted_micros);
  EXPECT_EQ(a.assigned_workers, b.assigned_workers);
  EXPECT_EQ(a.master_port, b.master_port);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.max_restarts, b.max_restarts);
  EXPECT_EQ(a.preemptible, b.preemptible);
  EXPECT_EQ(a.restarts, b.restarts);
  EXPECT_EQ(a.not_before_micros, b.not_before_micros);
  EXPECT_EQ(a.resume_step, b.resume_step);
  EXPECT_EQ(a.resume_sha256, b.resume_sha256);
  EXPECT_EQ(a.stop_reason, b.stop_reason);
  ASSERT_EQ(a.events.size(), b.events.size());
  for (size_t i = 0; i < a.events.size(); ++i) {
    EXPECT_EQ(a.events[i].time_micros, b.events[i].time_micros);
    EXPECT_EQ(a.events[i].state, b.events[i].state);
    EXPECT_EQ(a.events[i].reason, b.events[i].reason);
  }
}

void RoundTrip(Store& s) {
  ASSERT_EQ(*s.NextJobSequence(), 1);
  ASSERT_EQ(*s.NextJobSequence(), 2);
  ASSERT_TRUE(s.PutJob(SampleJob("b", 2)).ok());
  ASSERT_TRUE(s.PutJob(SampleJob("a", 1)).ok());
  auto got = s.GetJob("b");
  ASSERT_TRUE(got.ok() && got->has_value());
  ExpectSameJob(**got, SampleJob("b", 2));
  EXPECT_FALSE(s.GetJob("zzz")->has_value());
  auto all = s.ListJobs();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, "a") << "jobs list in submission order";
  Job changed = SampleJob("b", 2);
  changed.state = JobState::kSucceeded;
  changed.events.push_back({400, JobState::kSucceeded, "done"});
  ASSERT_TRUE(s.PutJob(changed).ok());
  ExpectSameJob(**s.GetJob("b"), changed);
  StepMetrics m1, m2;
  m1.step = 1;
  m2.step = 2;
  EvalMetrics e2;
  e2.step = 2;
  e2.languages["hi"] = {1.5, 4.5, 0.25, 12};
  ASSERT_TRUE(s.AppendMetrics("b", 1, {{m1}}).ok());
  ASSERT_TRUE(s.AppendMetrics("b", 2, {{m2}, {e2}}).ok());
  // A batch delivered again (its first reply was lost) is stored once.
  ASSERT_TRUE(s.AppendMetrics("b", 2, {{m2}, {e2}}).ok());
  auto metrics = s.Metrics("b", 0, 100);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  ASSERT_EQ(metrics->size(), 3u);
  EXPECT_EQ((*metrics)[0].attempt, 1);
  EXPECT_EQ((*metrics)[2].attempt, 2);
  EXPECT_EQ((*metrics)[0].record.step(), 1);
  EXPECT_EQ((*metrics)[1].record.step(), 2);
  EXPECT_TRUE((*metrics)[2].record.is_eval());
  EXPECT_EQ(std::get<EvalMetrics>((*metrics)[2].record.value).languages.at("hi").tokens, 12);
  // Paged by seq: only what follows the cursor, at most `limit`.
  auto mpage = s.Metrics("b", (*metrics)[0].seq, 1);
  ASSERT_TRUE(mpage.ok());
  ASSERT_EQ(mpage->size(), 1u);
  EXPECT_EQ((*mpage)[0].seq, (*metrics)[1].seq);
  EXPECT_TRUE(s.Metrics("b", (*metrics)[2].seq, 100)->empty());
  // A restart from step 1 drops what came after; the new placement's step 2 is stored again.
  StepMetrics m3;
  m3.step = 3;
  ASSERT_TRUE(s.AppendMetrics("a", 1, {{m1}, {m3}}).ok());
  ASSERT_TRUE(s.DropMetricsAfter("b", 1).ok());
  ASSERT_EQ(s.Metrics("b", 0, 100)->size(), 1u);
  // The data preparation report (step 0) is its own kind: beside an evaluation at step 0, once
  // however often a restarted attempt reports it, and kept by a restart from any step.
  DataPrepSummary prep;
  prep.languages["es"] = {5, 4, {{"duplicate", 1}}, {}};
  EvalMetrics e0;
  ASSERT_TRUE(s.AppendMetrics("c", 1, {{m1}, {prep}, {e0}}).ok());
  prep.cached = true;
  ASSERT_TRUE(s.AppendMetrics("c", 2, {{prep}}).ok());
  auto with_prep = s.Metrics("c", 0, 100);
  ASSERT_EQ(with_prep->size(), 3u);
  EXPECT_TRUE((*with_prep)[1].record.is_data_prep());
  EXPECT_FALSE(std::get<DataPrepSummary>((*with_prep)[1].record.value).cached) << "the first report stays";
  ASSERT_TRUE(s.DropMetricsAfter("c", 0).ok());
  EXPECT_EQ(s.Metrics("c", 0, 100)->size(), 2u);
  EXPECT_EQ(s.Metrics("a", 0, 100)->size(), 2u) << "other jobs keep theirs";
  ASSERT_TRUE(s.AppendMetrics("b", 3, {{m2}, {e2}}).ok());
  metrics = s.Metrics("b", 0, 100);
  ASSERT_EQ(metrics->size(), 3u);
  EXPECT_EQ((*metrics)[1].attempt, 3);
  ASSERT_TRUE(s.PutCheckpoint({"b", 20, "ab", 10, "sha256/ab"}).ok());
  ASSERT_TRUE(s.PutCheckpoint({"b", 10, "cd", 9, "sha256/cd"}).ok());
  auto cks = s.Checkpoints("b");
  ASSERT_EQ(cks->size(), 2u);
  EXPECT_EQ((*cks)[0].step, 10);
  EXPECT_EQ((*cks)[1].sha256, "ab");
  ASSERT_TRUE(s.AppendLogs("b", 0, {"eval @ step 0: loss 5.77", "step 1/6"}).ok());
  ASSERT_TRUE(s.AppendLogs("a", 1, {"other job"}).ok());
  ASSERT_TRUE(s.AppendLogs("b", 1, {"rank 1 says hi", "", "last"}).ok());
  auto logs = s.Logs("b", 0, 100);
  ASSERT_TRUE(logs.ok()) << logs.status();
  ASSERT_EQ(logs->size(), 5u);
  EXPECT_EQ((*logs)[0].text, "eval @ step 0: loss 5.77");
  EXPECT_EQ((*logs)[2].rank, 1);
  EXPECT_EQ((*logs)[3].text, "");
  for (size_t i = 1; i < logs->size(); ++i) EXPECT_GT((*logs)[i].seq, (*logs)[i - 1].seq);
  auto page = s.Logs("b", (*logs)[1].seq, 2);  // after the second line, two at most
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].text, "rank 1 says hi");
  EXPECT_TRUE(s.Logs("b", (*logs)[4].seq, 100)->empty());
  Worker w;
  w.id = "w1";
  w.incarnation = "i1";
  w.address = "10.0.0.1";
  w.devices = {{"cuda", 0, 80LL << 30}, {"cuda", 1, 80LL << 30}};
  w.rendezvous_port_first = 31000;
  w.rendezvous_port_count = 8;
  w.draining = true;
  ASSERT_TRUE(s.PutWorker(w).ok());
  auto ws = s.ListWorkers();
  ASSERT_EQ(ws->size(), 1u);
  EXPECT_EQ((*ws)[0].rendezvous_port_first, 31000);
  EXPECT_EQ((*ws)[0].rendezvous_port_count, 8);
  EXPECT_TRUE((*ws)[0].draining);
  EXPECT_EQ((*ws)[0].devices.size(), 2u);
  EXPECT_EQ((*ws)[0].devices[1].memory_bytes, 80LL << 30);
}

TEST(Store, InMemoryRoundTrip) {
  auto s = MakeInMemoryStore();
  RoundTrip(*s);
}

TEST(Store, SqliteRoundTripAndReloadAfterRestart) {
  std::string dir = "/tmp/polytune-store-XXXXXX";
  dir = ::mkdtemp(dir.data());
  const std::string path = dir + "/coordinator.db";
  {
    auto s = OpenSqliteStore(path);
    ASSERT_TRUE(s.ok()) << s.status();
    RoundTrip(**s);
  }
  // A restart (new connection) sees everything, and the sequence continues.
  auto s = OpenSqliteStore(path);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->ListJobs()->size(), 2u);
  EXPECT_EQ((**(*s)->GetJob("b")).state, JobState::kSucceeded);
  EXPECT_EQ((*s)->Metrics("b", 0, 100)->size(), 3u);
  EXPECT_EQ(*(*s)->NextJobSequence(), 3);
  std::filesystem::remove_all(dir);
}

TEST(Store, SqliteDatabaseFromBeforeTheRendezvousColumnsIsUpgraded) {
  std::string dir = "/tmp/polytune-store-XXXXXX";
  dir = ::mkdtemp(dir.data());
  const std::string path = dir + "/coordinator.db";
  // The tables as the first release wrote them, with one job in them.
  const std::string old_schema =
      "CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, priority INTEGER NOT NULL, sequence INTEGER NOT "
      "NULL, world_size INTEGER NOT NULL, spec_yaml TEXT NOT NULL, state INTEGER NOT NULL, reason TEXT NOT NULL, "
      "submitted_micros INTEGER NOT NULL, assigned_workers TEXT NOT NULL);"
      "CREATE TABLE workers (id TEXT PRIMARY KEY, incarnation TEXT NOT NULL, address TEXT NOT NULL, devices TEXT NOT "
      "NULL, last_heartbeat_micros INTEGER NOT NULL, alive INTEGER NOT NULL);"
      "INSERT INTO jobs VALUES ('job-000001', 'old', 0, 1, 1, 'spec', 3, 'done', 5, '[]');";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, old_schema.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto s = OpenSqliteStore(path);
  ASSERT_TRUE(s.ok()) << s.status();
  auto job = (*s)->GetJob("job-000001");
  ASSERT_TRUE(job.ok() && job->has_value()) << job.status();
  EXPECT_EQ((*job)->name, "old");
  EXPECT_EQ((*job)->master_port, 0);
  Job next = SampleJob("job-000002", 2);
  ASSERT_TRUE((*s)->PutJob(next).ok());
  ExpectSameJob(**(*s)->GetJob("job-000002"), next);
  std::filesystem::remove_all(dir);
}

TEST(Store, SqliteErrorsNameThePath) {
  auto s = OpenSqliteStore("/nonexistent-dir/polytune/coordinator.db");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("/nonexistent-dir/polytune/coordinator.db"), std::string::npos) << s.status();
}

}  // namespace
}  // namespace polytune::coordinator
