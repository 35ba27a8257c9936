#include "polytune/coordinator/job_manager.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "absl/strings/str_cat.h"

namespace polytune::coordinator {
namespace {

class JobManagerTest : public ::testing::Test {
 protected:
  JobManagerTest() : store_(MakeInMemoryStore()), jm_(store_.get(), &clock_) {}

  void AddWorker(const std::string& id, int devices, const std::string& inc = "inc-1", std::string address = "") {
    Worker w;
    w.id = id;
    w.incarnation = inc;
    w.address = address.empty() ? id + ".local" : address;
    w.rendezvous_port_first = 29600;
    w.rendezvous_port_count = 3;
    for (int i = 0; i < devices; ++i) w.devices.push_back({"cpu", i, 0});
    ASSERT_TRUE(jm_.RegisterWorker(w).ok());
  }

  HeartbeatReply Beat(const std::string& id, std::vector<RankReport> ranks = {}, const std::string& inc = "inc-1") {
    auto r = jm_.Heartbeat(id, inc, ranks);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HeartbeatReply{};
  }

  // A report on a rank of the job's first placement unless `attempt` says otherwise.
  static RankReport Report(const std::string& job, int rank, RankReport::Phase phase, int code = 0, int attempt = 1) {
    return {job, rank, phase, code, code ? "boom" : "", attempt};
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
  ASSERT_TRUE(store_->PutCheckpoint({id, 10, "sha-10", 100, "path"}).ok());  // uploaded before the exit report
  Beat("w1", {Report(id, r1.start[0].rank, RankReport::Phase::kExited)});
  Beat("w2", {Report(id, r2.start[0].rank, RankReport::Phase::kExited)});
  EXPECT_EQ(jm_.Get(id)->state, JobState::kSucceeded);
  EXPECT_EQ(States(id), (std::vector<JobState>{JobState::kPending, JobState::kScheduled, JobState::kRunning,
                                               JobState::kSucceeded}));
  EXPECT_EQ(jm_.FreeDevices().at("w1"), 1) << "devices are free again";
}

// Incremental scheduling: a heartbeat that changes nothing the scheduler reads decides
// nothing; a change (a new job, a worker heard from again, a backoff running out) decides at
// once; Tick always decides.
TEST_F(JobManagerTest, HeartbeatsDecideOnlyWhenTheSchedulingInputsChanged) {
  struct CycleCounter : JobObserver {
    void OnScheduleCycle(int64_t) override { ++cycles; }
    int cycles = 0;
  } counter;
  jm_.SetObserver(&counter);
  AddWorker("w1", 1);
  auto big = jm_.Submit("big", 0, 2, "spec");  // never fits: stays pending
  ASSERT_TRUE(big.ok());
  Beat("w1");
  const int after_submit = counter.cycles;
  for (int i = 0; i < 20; ++i) {
    clock_.AdvanceSeconds(1);
    Beat("w1");
  }
  EXPECT_EQ(counter.cycles, after_submit) << "20 heartbeats with nothing new: no decision";
  auto small = jm_.Submit("small", 1, 1, "spec");  // priority 1: ahead of big, fits now
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->state, JobState::kScheduled) << "a new job is decided at once";
  EXPECT_GT(counter.cycles, after_submit);
  const int before_tick = counter.cycles;
  ASSERT_TRUE(jm_.Tick().ok());
  EXPECT_EQ(counter.cycles, before_tick + 1) << "Tick decides regardless";
  // A worker silent past half the timeout gets no ranks; its next heartbeat makes it
  // schedulable again and that is a change the scheduler must see.
  AddWorker("w2", 1);
  Beat("w2");
  clock_.AdvanceSeconds(6);  // over half of the 10 s timeout, without a Tick in between
  const int before_return = counter.cycles;
  Beat("w2");
  EXPECT_GT(counter.cycles, before_return);
}

TEST_F(JobManagerTest, TooLargeJobStaysPendingWithItsReason) {
  AddWorker("w1", 2);
  auto job = jm_.Submit("big", 0, 4, "spec");
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(jm_.Tick().ok());
  auto j = jm_.Get(job->id);
  EXPECT_EQ(j->state, JobState::kPending);
  EXPECT_EQ(j->reason, "needs 4 devices; the cluster has 2 in all (add workers or lower resources.world_size)");
}

TEST_F(JobManagerTest, SilentWorkerFailsItsJobsAndStopsTheOtherRanks) {
  AddWorker("w1", 1);
  AddWorker("w2", 1);
  auto job = jm_.Submit("j", 0, 2, "spec", "", {/*max_restarts=*/0, false});
  Beat("w1");
  Beat("w2");
  std::vector<std::string> cancels;
  for (int i = 0; i < 12; ++i) {
    clock_.AdvanceSeconds(1);
    for (const auto& c : Beat("w2").cancel_jobs) cancels.push_back(c);  // w1 went quiet
    ASSERT_TRUE(jm_.Tick().ok());
  }
  for (const auto& c : Beat("w2").cancel_jobs) cancels.push_back(c);
  auto j = jm_.Get(job->id);
  EXPECT_EQ(j->state, JobState::kFailed);
  EXPECT_EQ(j->reason,
            "worker w1 lost (no heartbeat for 10 s); no restarts left (resources.max_restarts: 0; every attempt's "
            "reason is in the events)");
  EXPECT_EQ(cancels, std::vector<std::string>{job->id}) << "the surviving rank is told to stop, once";
  EXPECT_FALSE(jm_.Heartbeat("w1", "inc-1", {}).ok()) << "a lost worker must register again";
}

TEST_F(JobManagerTest, CancelStopsRanksAndBadInputFailsTheJob) {
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
  Beat("w1", {Report(b->id, 0, RankReport::Phase::kRunning), Report(b->id, 1, RankReport::Phase::kExited, 2)});
  auto j = jm_.Get(b->id);
  EXPECT_EQ(j->state, JobState::kFailed);
  EXPECT_EQ(j->reason, "rank 1 on w1 exited with code 2: boom (bad input: not restarted)");
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
  EXPECT_EQ(j->master_port, job->master_port) << "the rendezvous port survives a restart";
  EXPECT_EQ(j->attempt, 1);
}

TEST_F(JobManagerTest, RestartedCoordinatorRestartsTheRunningJobOfAWorkerThatNeverReturns) {
  AddWorker("w1", 1);
  AddWorker("w2", 1);
  auto job = jm_.Submit("gang", 0, 2, "spec");
  Beat("w1", {Report(job->id, 0, RankReport::Phase::kRunning)});
  Beat("w2", {Report(job->id, 1, RankReport::Phase::kRunning)});
  ASSERT_EQ(jm_.Get(job->id)->state, JobState::kRunning);
  // The coordinator restarts; w1 comes back, w2 never does.
  JobManagerOptions options;
  options.heartbeat_timeout_micros = 10'000'000;
  JobManager restarted(store_.get(), &clock_, options);
  ASSERT_TRUE(restarted.Recover().ok());
  EXPECT_EQ(restarted.Get(job->id)->state, JobState::kRunning);
  for (int i = 0; i < 10; ++i) {
    clock_.AdvanceSeconds(1.05);
    ASSERT_TRUE(restarted.Heartbeat("w1", "inc-1", {Report(job->id, 0, RankReport::Phase::kRunning)}).ok());
    ASSERT_TRUE(restarted.Tick().ok());
  }
  const Job j = *restarted.Get(job->id);
  EXPECT_EQ(j.state, JobState::kPending) << "it leaves RUNNING within the heartbeat timeout";
  EXPECT_NE(j.reason.find("restart 1 of 3: worker w2 lost"), std::string::npos) << j.reason;
  // w1's rank is told to stop.
  auto reply = restarted.Heartbeat("w1", "inc-1", {});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->cancel_jobs, std::vector<std::string>{job->id});
}

TEST_F(JobManagerTest, WorkersReloadedAfterARestartGetNoRanksUntilHeardFrom) {
  AddWorker("w1", 1);
  JobManager restarted(store_.get(), &clock_);
  ASSERT_TRUE(restarted.Recover().ok());
  auto job = restarted.Submit("waits", 0, 1, "spec");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(restarted.Get(job->id)->state, JobState::kPending);
  auto reply = restarted.Heartbeat("w1", "inc-1", {});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(restarted.Get(job->id)->state, JobState::kScheduled);
  EXPECT_EQ(reply->start.size(), 1u);
}

TEST_F(JobManagerTest, RendezvousPortsAreDistinctPerHostAndFreedWhenJobsEnd) {
  // Two daemons on one host share its ports; a third host has its own. Each range is 3 ports.
  AddWorker("a1", 2, "inc-1", "10.0.0.1");
  AddWorker("a2", 2, "inc-1", "10.0.0.1");
  AddWorker("b1", 1, "inc-1", "10.0.0.2");
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(jm_.Submit("j" + std::to_string(i), 0, 1, "spec")->id);
  std::map<std::string, std::set<int32_t>> ports;  // host -> ports in use
  for (const auto& id : ids) {
    const Job j = *jm_.Get(id);
    ASSERT_EQ(j.state, JobState::kScheduled) << id;
    const std::string host = j.assigned_workers[0] == "b1" ? "10.0.0.2" : "10.0.0.1";
    EXPECT_TRUE(ports[host].insert(j.master_port).second) << "port " << j.master_port << " twice on " << host;
    EXPECT_GE(j.master_port, 29600);
    EXPECT_LT(j.master_port, 29603);
  }
  // Host 10.0.0.1 has 4 devices but 3 ports, so the four jobs took its 3 ports and b1; a fifth
  // waits although a device is free.
  EXPECT_EQ(ports["10.0.0.1"].size(), 3u);
  EXPECT_EQ(ports["10.0.0.2"].size(), 1u);
  auto sixth = jm_.Submit("j4", 0, 1, "spec");
  ASSERT_TRUE(sixth.ok());
  EXPECT_EQ(sixth->state, JobState::kPending) << sixth->reason;
  EXPECT_NE(sixth->reason.find("every rendezvous port is in use on 10.0.0.1 (29600-29602)"), std::string::npos)
      << sixth->reason;
  // When a job on that host ends, its port goes to the waiting job.
  std::string ended;
  for (const auto& id : ids)
    if (jm_.Get(id)->assigned_workers[0] != "b1") ended = id;
  const int32_t freed = jm_.Get(ended)->master_port;
  ASSERT_TRUE(jm_.Cancel(ended).ok());
  EXPECT_EQ(jm_.Get(sixth->id)->state, JobState::kScheduled);
  EXPECT_EQ(jm_.Get(sixth->id)->master_port, freed);
}

TEST_F(JobManagerTest, PortLostToARaceAfterEveryRankStartedStillPlacesTheJobAgain) {
  AddWorker("w1", 1);
  AddWorker("w2", 1);
  const std::string id = jm_.Submit("gang", 0, 2, "spec")->id;
  HeartbeatReply r1 = Beat("w1"), r2 = Beat("w2");
  const std::string rank0 = r1.start[0].rank == 0 ? "w1" : "w2", other = rank0 == "w1" ? "w2" : "w1";
  Beat(other, {Report(id, 1, RankReport::Phase::kRunning)});
  Beat(rank0, {Report(id, 0, RankReport::Phase::kRunning)});
  ASSERT_EQ(jm_.Get(id)->state, JobState::kRunning) << "both rank processes started";
  RankReport busy = Report(id, 0, RankReport::Phase::kExited, 3);  // the trainer's port-busy exit
  busy.rendezvous_port_busy = true;
  Beat(rank0, {busy});
  const Job j = *jm_.Get(id);
  EXPECT_EQ(j.state, JobState::kScheduled) << "placed again, not failed";
  EXPECT_EQ(j.attempt, 2);
}

TEST_F(JobManagerTest, BusyRendezvousPortPlacesTheJobAgainAndIgnoresStaleRanks) {
  AddWorker("w1", 1);
  AddWorker("w2", 1);
  const std::string id = jm_.Submit("gang", 0, 2, "spec")->id;
  HeartbeatReply r1 = Beat("w1"), r2 = Beat("w2");
  ASSERT_EQ(r1.start.size(), 1u);
  const bool w1_is_rank0 = r1.start[0].rank == 0;
  const std::string rank0 = w1_is_rank0 ? "w1" : "w2", other = w1_is_rank0 ? "w2" : "w1";
  const int32_t first_port = r1.start[0].master_port;
  EXPECT_EQ(r1.start[0].attempt, 1);
  // The other rank started and waits at the store; rank 0 finds the port taken.
  Beat(other, {Report(id, 1, RankReport::Phase::kRunning)});
  RankReport busy = Report(id, 0, RankReport::Phase::kExited, 2);
  busy.rendezvous_port_busy = true;
  HeartbeatReply again = Beat(rank0, {busy});
  Job j = *jm_.Get(id);
  EXPECT_EQ(j.state, JobState::kScheduled) << "placed again at once";
  EXPECT_EQ(j.attempt, 2);
  EXPECT_NE(j.master_port, first_port) << "the busy port is quarantined on that host";
  EXPECT_EQ(States(id), (std::vector<JobState>{JobState::kPending, JobState::kScheduled, JobState::kPending,
                                               JobState::kScheduled}));
  EXPECT_NE(j.events[2].reason.find(absl::StrCat("rendezvous port ", first_port)), std::string::npos)
      << j.events[2].reason;
  ASSERT_EQ(again.start.size(), 1u);
  EXPECT_EQ(again.start[0].attempt, 2);
  HeartbeatReply other_reply = Beat(other, {Report(id, 1, RankReport::Phase::kExited, 143)});
  EXPECT_EQ(other_reply.cancel_jobs, std::vector<std::string>{id}) << "the waiting rank of attempt 1 is stopped";
  ASSERT_EQ(other_reply.start.size(), 1u);
  EXPECT_EQ(jm_.Get(id)->state, JobState::kScheduled) << "its exit (attempt 1) does not fail attempt 2";
  // Attempt 2 runs to success.
  ASSERT_TRUE(store_->PutCheckpoint({id, 10, "sha-10", 100, "path"}).ok());
  Beat("w1", {Report(id, 0, RankReport::Phase::kExited, 0, 2), Report(id, 1, RankReport::Phase::kExited, 0, 2)});
  EXPECT_EQ(jm_.Get(id)->state, JobState::kSucceeded);
  // The quarantine ends.
  clock_.AdvanceSeconds(61);
  Beat("w1");  // heard from lately: schedulable
  const std::string next = jm_.Submit("later", 0, 1, "spec")->id;
  EXPECT_EQ(jm_.Get(next)->master_port, 29600);
}

}  // namespace
}  // namespace polytune::coordinator
