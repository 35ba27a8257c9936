#include "polytune/coordinator/job_manager.h"

#include <gtest/gtest.h>

namespace polytune::coordinator {
namespace {

class JobManagerTest : public ::testing::Test {
 protected:
  JobManagerTest() : store_(MakeInMemoryStore()), jm_(store_.get(), &clock_) {}

  void AddWorker(const std::string& id, int devices, const std::string& inc = "inc-1") {
    Worker w;
    w.id = id;
    w.incarnation = inc;
    w.address = id + ".local";
    for (int i = 0; i < devices; ++i) w.devices.push_back({"cpu", i, 0});
    ASSERT_TRUE(jm_.RegisterWorker(w).ok());
  }

  HeartbeatReply Beat(const std::string& id, std::vector<RankReport> ranks = {}, const std::string& inc = "inc-1") {
    auto r = jm_.Heartbeat(id, inc, ranks);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HeartbeatReply{};
  }

  static RankReport Report(const std::string& job, int rank, RankReport::Phase phase, int code = 0) {
    return {job, rank, phase, code, code ? "boom" : ""};
  }

  std::vector<JobState> States(const std::string& id) {
    std::vector<JobState> out;
    const Job job = *jm_.Get(id);
    for (const auto& e : job.events) out.push_back(e.state);
    return out;
  }

  FakeClock clock_;
  std::unique_ptr<Store> store_;
  JobManager jm_;
};

TEST_F(JobManagerTest, GangJobRunsToSuccessWithEveryTransitionRecorded) {
  AddWorker("w1", 1);
  AddWorker("w2", 1);
  auto job = jm_.Submit("es-medical", 0, 2, "spec");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, JobState::kScheduled);
  HeartbeatReply r1 = Beat("w1"), r2 = Beat("w2");
  ASSERT_EQ(r1.start.size(), 1u);
  ASSERT_EQ(r2.start.size(), 1u);
  EXPECT_EQ(r1.start[0].world_size, 2);
  EXPECT_EQ(r1.start[0].master_addr, r2.start[0].master_addr) << "every rank meets at rank 0's host";
  EXPECT_EQ(r1.start[0].master_port, r2.start[0].master_port);
  EXPECT_NE(r1.start[0].rank, r2.start[0].rank);
  const std::string id = job->id;
  Beat("w1", {Report(id, r1.start[0].rank, RankReport::Phase::kRunning)});
  EXPECT_EQ(jm_.Get(id)->state, JobState::kScheduled) << "running only once every rank runs";
  Beat("w2", {Report(id, r2.start[0].rank, RankReport::Phase::kRunning)});
  EXPECT_EQ(jm_.Get(id)->state, JobState::kRunning);
  clock_.AdvanceSeconds(5);
  Beat("w1", {Report(id, r1.start[0].rank, RankReport::Phase::kExited)});
  Beat("w2", {Report(id, r2.start[0].rank, RankReport::Phase::kExited)});
  EXPECT_EQ(jm_.Get(id)->state, JobState::kSucceeded);
  EXPECT_EQ(States(id), (std::vector<JobState>{JobState::kPending, JobState::kScheduled, JobState::kRunning,
                                                JobState::kSucceeded}));
  EXPECT_EQ(jm_.FreeDevices().at("w1"), 1) << "devices are free again";
}

TEST_F(JobManagerTest, TooLargeJobStaysPendingWithItsReason) {
  AddWorker("w1", 2);
  auto job = jm_.Submit("big", 0, 4, "spec");
  ASSERT_TRUE(job.ok());
  jm_.Tick();
  auto j = jm_.Get(job->id);
  EXPECT_EQ(j->state, JobState::kPending);
  EXPECT_EQ(j->reason, "needs 4 devices; the cluster has 2 in all (add workers or lower resources.world_size)");
}

TEST_F(JobManagerTest, SilentWorkerFailsItsJobsAndStopsTheOtherRanks) {
  AddWorker("w1", 1);
  AddWorker("w2", 1);
  auto job = jm_.Submit("j", 0, 2, "spec");
  Beat("w1");
  Beat("w2");
  std::vector<std::string> cancels;
  for (int i = 0; i < 12; ++i) {
    clock_.AdvanceSeconds(1);
    for (const auto& c : Beat("w2").cancel_jobs) cancels.push_back(c);  // w1 went quiet
    jm_.Tick();
  }
  for (const auto& c : Beat("w2").cancel_jobs) cancels.push_back(c);
  auto j = jm_.Get(job->id);
  EXPECT_EQ(j->state, JobState::kFailed);
  EXPECT_EQ(j->reason, "worker w1 lost: no heartbeat for 10 s");
  EXPECT_EQ(cancels, std::vector<std::string>{job->id}) << "the surviving rank is told to stop, once";
  EXPECT_FALSE(jm_.Heartbeat("w1", "inc-1", {}).ok()) << "a lost worker must register again";
}

TEST_F(JobManagerTest, CancelStopsRanksAndRankFailureFailsTheJob) {
  AddWorker("w1", 2);
  auto a = jm_.Submit("a", 0, 2, "spec");
  Beat("w1");
  auto cancelled = jm_.Cancel(a->id);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state, JobState::kCancelled);
  EXPECT_EQ(cancelled->reason, "cancelled by user");
  EXPECT_EQ(Beat("w1").cancel_jobs, std::vector<std::string>{a->id});

  auto b = jm_.Submit("b", 0, 2, "spec");
  HeartbeatReply r = Beat("w1");
  ASSERT_EQ(r.start.size(), 2u);
  Beat("w1", {Report(b->id, 0, RankReport::Phase::kRunning), Report(b->id, 1, RankReport::Phase::kExited, 3)});
  auto j = jm_.Get(b->id);
  EXPECT_EQ(j->state, JobState::kFailed);
  EXPECT_EQ(j->reason, "rank 1 on w1 exited with code 3: boom");
  EXPECT_NE(jm_.Cancel("job-999999").status().message().find("no job 'job-999999'"), std::string::npos);
}

TEST_F(JobManagerTest, RestartReloadsJobsFromTheStore) {
  AddWorker("w1", 1);
  auto job = jm_.Submit("persisted", 2, 1, "spec-yaml");
  JobManager restarted(store_.get(), &clock_);
  ASSERT_TRUE(restarted.Recover().ok());
  auto j = restarted.Get(job->id);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->name, "persisted");
  EXPECT_EQ(j->spec_yaml, "spec-yaml");
  EXPECT_EQ(j->state, JobState::kScheduled);
  EXPECT_EQ(j->events.size(), 2u);
}

}  // namespace
}  // namespace polytune::coordinator
