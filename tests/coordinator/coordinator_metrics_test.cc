// Coordinator metrics under a fake clock: they follow JobManager's transitions.
#include "polytune/coordinator/coordinator_metrics.h"

#include <gtest/gtest.h>

#include "polytune/telemetry/telemetry.h"

namespace polytune::coordinator {
namespace {

// The value of `name` with exactly `labels` in the rendered text, or -1 when absent.
double Value(const std::string& text, const std::string& series) {
  for (size_t pos = 0; (pos = text.find(series + " ", pos)) != std::string::npos; pos += series.size()) {
    if (pos > 0 && text[pos - 1] != '\n') continue;
    return std::stod(text.substr(pos + series.size() + 1));
  }
  return -1;
}

class CoordinatorMetricsTest : public ::testing::Test {
 protected:
  CoordinatorMetricsTest()
      : store_(MakeInMemoryStore()),
        metrics_(std::make_shared<CoordinatorMetrics>(&clock_, Options())),
        jm_(store_.get(), &clock_) {
    jm_.SetObserver(metrics_.get());
    metrics_->SetClusterSource([this] { return jm_.Workers(); }, [this] { return jm_.FreeDevices(); });
  }
  static CoordinatorMetricsOptions Options() {
    CoordinatorMetricsOptions o;
    o.job_grace_micros = 30'000'000;
    return o;
  }
  void AddWorker(const std::string& id) {
    Worker w;
    w.id = id;
    w.incarnation = "i";
    w.address = id;
    w.devices.push_back({"cpu", 0, 0});
    ASSERT_TRUE(jm_.RegisterWorker(w).ok());
  }
  void Beat(const std::string& worker, const std::string& job, int rank, RankReport::Phase phase, int attempt = 1) {
    ASSERT_TRUE(jm_.Heartbeat(worker, "i", {{job, rank, phase, 0, "", attempt}}).ok());
  }
  std::string Scrape() { return telemetry::Render({metrics_, metrics_->shared_registry()}); }

  FakeClock clock_;
  std::unique_ptr<Store> store_;
  std::shared_ptr<CoordinatorMetrics> metrics_;
  JobManager jm_;
};

TEST_F(CoordinatorMetricsTest, GaugesFollowTransitionsAndQueueWaitIsObservedOncePerJob) {
  auto job = jm_.Submit("j", 0, 1, "spec", "/models/m", {/*max_restarts=*/0, false});
  ASSERT_TRUE(job.ok());
  std::string t = Scrape();
  EXPECT_EQ(Value(t, R"(polytune_jobs{state="pending"})"), 1);
  EXPECT_EQ(Value(t, "polytune_jobs_submitted_total"), 1);
  AddWorker("w1");  // the job is placed
  t = Scrape();
  EXPECT_EQ(Value(t, R"(polytune_jobs{state="pending"})"), 0);
  EXPECT_EQ(Value(t, R"(polytune_jobs{state="scheduled"})"), 1);
  EXPECT_EQ(Value(t, R"(polytune_devices{kind="cpu",state="used"})"), 1);
  EXPECT_EQ(Value(t, R"(polytune_job_info{job_id=")" + job->id + R"(",model="/models/m",name="j"})"), 1);
  clock_.AdvanceSeconds(7);
  Beat("w1", job->id, 0, RankReport::Phase::kRunning);
  t = Scrape();
  EXPECT_EQ(Value(t, R"(polytune_jobs{state="running"})"), 1);
  EXPECT_EQ(Value(t, "polytune_job_queue_wait_seconds_count"), 1);
  EXPECT_EQ(Value(t, "polytune_job_queue_wait_seconds_sum"), 7);
  // The worker dies; the job fails. (Going back to PENDING and RUNNING again would still
  // count the wait once: the set of observed jobs is per job.)
  clock_.AdvanceSeconds(20);
  ASSERT_TRUE(jm_.Tick().ok());
  t = Scrape();
  EXPECT_EQ(Value(t, R"(polytune_jobs{state="running"})"), 0);
  EXPECT_EQ(Value(t, R"(polytune_jobs_finished_total{outcome="failed"})"), 1);
  EXPECT_EQ(Value(t, "polytune_workers_lost_total"), 1);
  EXPECT_EQ(Value(t, R"(polytune_workers{state="lost"})"), 1);
  EXPECT_EQ(Value(t, R"(polytune_job_duration_seconds_count{outcome="failed"})"), 1);
  EXPECT_EQ(Value(t, "polytune_job_queue_wait_seconds_count"), 1);
}

TEST_F(CoordinatorMetricsTest, PerJobSeriesComeFromTypedRecordsAndGoAfterTheGracePeriod) {
  AddWorker("w1");
  auto job = jm_.Submit("j", 0, 1, "spec", "/m");
  Beat("w1", job->id, 0, RankReport::Phase::kRunning);
  StepMetrics s;
  s.step = 5;
  s.total_steps = 20;
  s.loss = 1.25;
  s.lr = 1e-4;
  s.tokens = 1000;
  s.elapsed_seconds = 10;
  EvalMetrics e;
  e.step = 5;
  e.languages["es"] = {2.5, 12.2, 0.4, 50};
  e.languages["hi"] = {3.5, 33.1, 0.3, 40};
  e.languages["es"].generated = 6;  // evaluation by generation on the Spanish examples
  e.languages["es"].chrf = 33.5;
  EvalMetrics later = e;  // a later evaluation without generation keeps the last chrF
  later.step = 6;
  later.languages["es"] = {2.4, 11.0, 0.45, 50};
  metrics_->OnMetricsRecords(job->id, {{s}, {s}, {e}, {later}});
  const std::string id = job->id;
  std::string t = Scrape();
  EXPECT_EQ(Value(t, R"(polytune_train_step{job_id=")" + id + R"("})"), 5);
  EXPECT_EQ(Value(t, R"(polytune_train_max_steps{job_id=")" + id + R"("})"), 20);
  EXPECT_EQ(Value(t, R"(polytune_train_tokens_total{job_id=")" + id + R"("})"), 2000);
  EXPECT_EQ(Value(t, R"(polytune_train_loss{job_id=")" + id + R"("})"), 1.25);
  EXPECT_EQ(Value(t, R"(polytune_train_eta_seconds{job_id=")" + id + R"("})"), 30);
  EXPECT_EQ(Value(t, R"(polytune_eval_loss{job_id=")" + id + R"(",lang="hi"})"), 3.5);
  EXPECT_EQ(Value(t, R"(polytune_eval_loss{job_id=")" + id + R"(",lang="es"})"), 2.4);
  EXPECT_EQ(Value(t, R"(polytune_eval_chrf{job_id=")" + id + R"(",lang="es"})"), 33.5);
  EXPECT_EQ(t.find(R"(polytune_eval_chrf{job_id=")" + id + R"(",lang="hi"})"), std::string::npos);
  EXPECT_EQ(Value(t, R"(polytune_eval_accuracy{job_id=")" + id + R"(",lang="es"})"), 0.45);
  ASSERT_TRUE(store_->PutCheckpoint({id, 5, "sha-5", 100, "path"}).ok());  // the final checkpoint
  Beat("w1", id, 0, RankReport::Phase::kExited);                           // succeeded
  clock_.AdvanceSeconds(29);
  EXPECT_EQ(Value(Scrape(), R"(polytune_train_step{job_id=")" + id + R"("})"), 5) << "kept during the grace period";
  clock_.AdvanceSeconds(2);
  t = Scrape();
  EXPECT_EQ(t.find(id), std::string::npos) << "every per-job series is gone after it";
  EXPECT_EQ(Value(t, R"(polytune_jobs_finished_total{outcome="succeeded"})"), 1);
  metrics_->OnMetricsRecords(id, {{s}});  // a late record of an ended job
  EXPECT_EQ(Scrape().find(id), std::string::npos);
}

TEST_F(CoordinatorMetricsTest, PendingJobsExportNoTrainingSeries) {
  auto job = jm_.Submit("waits", 0, 3, "spec", "/m");
  EXPECT_EQ(Scrape().find(job->id), std::string::npos);
}

TEST_F(CoordinatorMetricsTest, StoreWritesAreTimed) {
  auto timed = MakeTimedStore(store_.get(), metrics_.get());
  Worker w;
  w.id = "x";
  ASSERT_TRUE(timed->PutWorker(w).ok());
  ASSERT_TRUE(timed->AppendLogs("j", 0, {"a"}).ok());
  EXPECT_EQ(Value(Scrape(), "polytune_store_transaction_duration_seconds_count"), 2);
}

}  // namespace
}  // namespace polytune::coordinator
