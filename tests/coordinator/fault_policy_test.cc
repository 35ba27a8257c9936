// Restart, drain and preemption policy of the JobManager under a fake clock: which failures
// restart a job (and from which checkpoint), how restarts back off and run out, what a
// coordinator restart re-issues, and which jobs a higher-priority one preempts.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "polytune/common/exit_codes.h"
#include "polytune/coordinator/job_manager.h"
#include "polytune/coordinator/scheduler.h"

namespace polytune::coordinator {
namespace {

using Phase = RankReport::Phase;

class FaultPolicyTest : public ::testing::Test {
 protected:
  FaultPolicyTest() : store_(MakeInMemoryStore()), jm_(store_.get(), &clock_, Options()) {}

  static JobManagerOptions Options() {
    JobManagerOptions o;
    o.heartbeat_timeout_micros = 10'000'000;
    o.restart_backoff_micros = 10'000'000;
    o.restart_backoff_max_micros = 40'000'000;
    return o;
  }

  void AddWorker(JobManager& jm, const std::string& id, const std::string& inc = "inc-1") {
    Worker w;
    w.id = id;
    w.incarnation = inc;
    w.address = id + ".local";
    w.devices.push_back({"cpu", 0, 0});
    ASSERT_TRUE(jm.RegisterWorker(w).ok());
  }
  void AddWorker(const std::string& id) { AddWorker(jm_, id); }

  HeartbeatReply Beat(const std::string& id, std::vector<RankReport> ranks = {}, JobManager* jm = nullptr) {
    auto r = (jm ? jm : &jm_)->Heartbeat(id, "inc-1", ranks);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HeartbeatReply{};
  }

  static RankReport Report(const std::string& job, int rank, Phase phase, int code, int attempt) {
    return {job, rank, phase, code, code ? "boom" : "", attempt};
  }

  // Starts `id`'s placement `attempt`: every assigned worker reports its rank running.
  void RunAll(const std::string& id) {
    const Job j = *jm_.Get(id);
    for (int r = 0; r < j.world_size; ++r) Beat(j.assigned_workers[r], {Report(id, r, Phase::kRunning, 0, j.attempt)});
    ASSERT_EQ(jm_.Get(id)->state, JobState::kRunning);
  }

  void Checkpoint(const std::string& id, int64_t step) {
    ASSERT_TRUE(store_->PutCheckpoint({id, step, absl::StrCat("sha-", step), 100, "path"}).ok());
  }

  void Metrics(const std::string& id, int attempt, int64_t first, int64_t last) {
    std::vector<MetricsRecord> records;
    for (int64_t s = first; s <= last; ++s) {
      StepMetrics m;
      m.step = s;
      records.push_back({m});
    }
    ASSERT_TRUE(store_->AppendMetrics(id, attempt, records).ok());
    jm_.NoteProgress(id, last);
  }

  std::vector<int64_t> StoredSteps(const std::string& id) {
    std::vector<int64_t> out;
    auto stored = store_->Metrics(id, 0, 1000);  // kept alive: the loop reads into it
    EXPECT_TRUE(stored.ok()) << stored.status();
    for (const auto& r : *stored) out.push_back(r.record.step());
    return out;
  }

  FakeClock clock_;
  std::unique_ptr<Store> store_;
  JobManager jm_;
};

TEST_F(FaultPolicyTest, LostWorkerRestartsTheJobFromItsLastCheckpointAfterABackoff) {
  AddWorker("w1");
  AddWorker("w2");
  auto job = jm_.Submit("es-medical", 0, 2, "spec");
  ASSERT_TRUE(job.ok());
  RunAll(job->id);
  Checkpoint(job->id, 10);
  Checkpoint(job->id, 20);
  Metrics(job->id, 1, 1, 25);
  AddWorker("w3");  // a spare joins
  // w2 goes silent.
  for (int i = 0; i < 11; ++i) {
    clock_.AdvanceSeconds(1);
    Beat("w1");
    Beat("w3");
    ASSERT_TRUE(jm_.Tick().ok());
  }
  Job j = *jm_.Get(job->id);
  ASSERT_EQ(j.state, JobState::kPending);
  EXPECT_EQ(j.reason,
            "restart 1 of 3: worker w2 lost (no heartbeat for 10 s) at step 25; resuming from checkpoint step 20 "
            "after 10.0 s");
  EXPECT_EQ(j.restarts, 1);
  EXPECT_EQ(j.resume_step, 20);
  EXPECT_EQ(j.resume_sha256, "sha-20");
  std::vector<int64_t> expected;
  for (int64_t s = 1; s <= 20; ++s) expected.push_back(s);
  EXPECT_EQ(StoredSteps(job->id), expected) << "steps the restart repeats are not shown twice";
  // The surviving rank is stopped; nothing is placed during the backoff.
  clock_.AdvanceSeconds(5);
  Beat("w1");
  Beat("w3");
  EXPECT_EQ(jm_.Get(job->id)->state, JobState::kPending);
  clock_.AdvanceSeconds(5);
  HeartbeatReply r3 = Beat("w3");  // the backoff is over: placed during this heartbeat
  j = *jm_.Get(job->id);
  ASSERT_EQ(j.state, JobState::kScheduled) << j.reason;
  EXPECT_EQ(j.attempt, 2);
  EXPECT_EQ(j.assigned_workers, (std::vector<std::string>{"w1", "w3"}));
  HeartbeatReply r1 = Beat("w1");
  ASSERT_EQ(r1.start.size(), 1u);
  ASSERT_EQ(r3.start.size(), 1u);
  EXPECT_EQ(r1.start[0].resume_sha256, "sha-20");
  EXPECT_EQ(r1.start[0].resume_step, 20);
  EXPECT_EQ(r3.start[0].resume_step, 20);
  EXPECT_EQ(r1.start[0].attempt, 2);
  // Results of the superseded placement are refused; the new one's are taken.
  EXPECT_FALSE(jm_.AcceptsResults(job->id, 1));
  EXPECT_TRUE(jm_.AcceptsResults(job->id, 2));
}

TEST_F(FaultPolicyTest, CrashingRankRestartsWithDoublingBackoffThenFailsWithEveryReason) {
  AddWorker("w1");
  auto job = jm_.Submit("crashy", 0, 1, "spec", "", {2, false});
  ASSERT_TRUE(job.ok());
  std::vector<int64_t> waits;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    Job j = *jm_.Get(job->id);
    ASSERT_EQ(j.state, JobState::kScheduled) << j.reason;
    ASSERT_EQ(j.attempt, attempt);
    Beat("w1", {Report(job->id, 0, Phase::kExited, 128 + 9, attempt)});
    j = *jm_.Get(job->id);
    if (attempt == 3) break;
    ASSERT_EQ(j.state, JobState::kPending);
    EXPECT_EQ(j.restarts, attempt);
    // Waits out the backoff: placed on the first tick at or after it.
    int64_t waited = 0;
    while (jm_.Get(job->id)->state == JobState::kPending) {
      clock_.AdvanceSeconds(1);
      waited += 1;
      Beat("w1");
      ASSERT_LT(waited, 100);
    }
    waits.push_back(waited);
  }
  EXPECT_EQ(waits, (std::vector<int64_t>{10, 20})) << "the backoff doubles";
  const Job j = *jm_.Get(job->id);
  EXPECT_EQ(j.state, JobState::kFailed);
  EXPECT_NE(j.reason.find("no restarts left (resources.max_restarts: 2"), std::string::npos) << j.reason;
  int restarts_in_events = 0;
  for (const auto& e : j.events)
    restarts_in_events += e.reason.find("rank 0 on w1 exited with code 137") != std::string::npos;
  EXPECT_EQ(restarts_in_events, 3) << "every attempt's reason is in the events";
}

TEST_F(FaultPolicyTest, BadInputFailsAtOnceWithoutARestart) {
  AddWorker("w1");
  auto job = jm_.Submit("bad", 0, 1, "spec");
  Beat("w1", {Report(job->id, 0, Phase::kExited, kExitBadInput, 1)});
  const Job j = *jm_.Get(job->id);
  EXPECT_EQ(j.state, JobState::kFailed);
  EXPECT_EQ(j.restarts, 0);
  EXPECT_EQ(j.reason, "rank 0 on w1 exited with code 2: boom (bad input: not restarted)");
}

TEST_F(FaultPolicyTest, DrainCheckpointsRunningJobsAndMovesThemWithoutCountingARestart) {
  AddWorker("w1");
  AddWorker("w2");
  auto job = jm_.Submit("moves", 0, 2, "spec");
  RunAll(job->id);
  AddWorker("w3");
  auto drained = jm_.Drain("w1", /*let_finish=*/false);
  ASSERT_TRUE(drained.ok());
  EXPECT_TRUE(drained->draining);
  EXPECT_EQ(jm_.Get(job->id)->reason, "stopping with a checkpoint: worker w1 is draining");
  // Every rank is told, on every heartbeat until the job leaves (an order lost is repeated).
  EXPECT_EQ(Beat("w1").preempt_jobs, std::vector<std::string>{job->id});
  EXPECT_EQ(Beat("w1").preempt_jobs, std::vector<std::string>{job->id});
  EXPECT_EQ(Beat("w2").preempt_jobs, std::vector<std::string>{job->id});
  // Rank 1 stops first; the job waits for rank 0, which uploads the checkpoint before it reports.
  Beat("w2", {Report(job->id, 1, Phase::kExited, kExitPreempted, 1)});
  EXPECT_EQ(jm_.Get(job->id)->state, JobState::kRunning);
  Checkpoint(job->id, 7);
  Beat("w1", {Report(job->id, 0, Phase::kExited, kExitPreempted, 1)});
  Job j = *jm_.Get(job->id);
  EXPECT_EQ(j.restarts, 0) << "a drain is not a failure";
  EXPECT_EQ(j.state, JobState::kScheduled) << "placed again at once, on the workers left";
  EXPECT_EQ(j.assigned_workers, (std::vector<std::string>{"w2", "w3"}));
  EXPECT_EQ(j.resume_step, 7);
  bool said = false;
  for (const auto& e : j.events) said |= e.reason == "worker w1 is draining; resuming from checkpoint step 7";
  EXPECT_TRUE(said);
  EXPECT_TRUE(Beat("w1").preempt_jobs.empty());
  // Undrained, w1 takes work again.
  ASSERT_TRUE(jm_.Undrain("w1").ok());
  auto next = jm_.Submit("next", 0, 1, "spec");
  EXPECT_EQ(jm_.Get(next->id)->assigned_workers, std::vector<std::string>{"w1"});
}

TEST_F(FaultPolicyTest, DrainWithLetFinishLeavesRunningJobsAloneButPlacesNothingNew) {
  AddWorker("w1");
  auto job = jm_.Submit("stays", 0, 1, "spec");
  RunAll(job->id);
  ASSERT_TRUE(jm_.Drain("w1", /*let_finish=*/true).ok());
  EXPECT_TRUE(jm_.Get(job->id)->stop_reason.empty());
  EXPECT_TRUE(Beat("w1").preempt_jobs.empty());
  Checkpoint(job->id, 10);  // the final checkpoint, stored before the exit is reported
  Beat("w1", {Report(job->id, 0, Phase::kExited, 0, 1)});
  EXPECT_EQ(jm_.Get(job->id)->state, JobState::kSucceeded);
  auto next = jm_.Submit("waits", 0, 1, "spec");
  EXPECT_EQ(jm_.Get(next->id)->state, JobState::kPending) << "a draining worker takes no new ranks";
  EXPECT_TRUE(jm_.Drain("nope", false).status().message().find("no worker 'nope'") != std::string::npos);
}

TEST_F(FaultPolicyTest, HigherPriorityJobPreemptsTheLowestPreemptibleOnesAndTheyResumeLater) {
  AddWorker("w1");
  AddWorker("w2");
  AddWorker("w3");
  auto low = jm_.Submit("low", 0, 2, "spec", "", {3, true});
  auto keep = jm_.Submit("not-preemptible", 1, 1, "spec", "", {3, false});
  RunAll(low->id);
  RunAll(keep->id);
  auto high = jm_.Submit("high", 5, 2, "spec");
  ASSERT_EQ(jm_.Get(high->id)->state, JobState::kPending);
  const Job l = *jm_.Get(low->id);
  EXPECT_EQ(l.stop_reason, absl::StrCat("preempted by ", high->id, " (priority 5 over 0)"));
  EXPECT_TRUE(jm_.Get(keep->id)->stop_reason.empty());
  // Asking again changes nothing: the stopping job's devices count as coming free.
  ASSERT_TRUE(jm_.Tick().ok());
  EXPECT_TRUE(jm_.Get(keep->id)->stop_reason.empty());
  Checkpoint(low->id, 4);
  Beat(l.assigned_workers[1], {Report(low->id, 1, Phase::kExited, kExitPreempted, 1)});
  Beat(l.assigned_workers[0], {Report(low->id, 0, Phase::kExited, kExitPreempted, 1)});
  const Job preempted = *jm_.Get(low->id);
  EXPECT_EQ(preempted.state, JobState::kPending) << "the high job has the devices; the low one waits";
  EXPECT_EQ(preempted.restarts, 0);
  EXPECT_EQ(preempted.resume_step, 4);
  EXPECT_EQ(jm_.Get(high->id)->state, JobState::kScheduled);
  bool said = false;
  for (const auto& e : preempted.events)
    said |=
        e.reason == absl::StrCat("preempted by ", high->id, " (priority 5 over 0); resuming from checkpoint step 4");
  EXPECT_TRUE(said);
  // The high job ends; the low one resumes from its checkpoint.
  const Job h = *jm_.Get(high->id);
  Checkpoint(high->id, 10);
  for (int r = 0; r < 2; ++r) Beat(h.assigned_workers[r], {Report(high->id, r, Phase::kExited, 0, 1)});
  ASSERT_EQ(jm_.Get(high->id)->state, JobState::kSucceeded);
  ASSERT_TRUE(jm_.Tick().ok());
  EXPECT_EQ(jm_.Get(low->id)->state, JobState::kScheduled);
  EXPECT_EQ(jm_.Get(low->id)->attempt, 2);
}

TEST_F(FaultPolicyTest, NoPreemptionThatCannotMakeRoom) {
  AddWorker("w1");
  AddWorker("w2");
  auto low = jm_.Submit("low", 0, 1, "spec", "", {3, true});
  auto keep = jm_.Submit("keep", 0, 1, "spec", "", {3, false});
  RunAll(low->id);
  RunAll(keep->id);
  auto high = jm_.Submit("high", 5, 2, "spec");
  EXPECT_EQ(jm_.Get(high->id)->state, JobState::kPending);
  EXPECT_TRUE(jm_.Get(low->id)->stop_reason.empty()) << "stopping it alone would not make room";
}

TEST(ChoosePreemptionsTest, LowestPriorityFirstThenDropsWhatOthersCover) {
  Job waiting;
  waiting.priority = 10;
  waiting.world_size = 2;
  std::vector<PlacedJob> placed = {
      {"a", 1, 1, true, false, 1},   // lowest priority, one device
      {"b", 2, 2, true, false, 2},   // two devices
      {"c", 20, 3, true, false, 4},  // higher priority than the waiting job: never
      {"d", 0, 4, false, false, 4},  // not preemptible
  };
  // a (1) is not enough; b (2) alone is, so a is dropped again.
  EXPECT_EQ(ChoosePreemptions(waiting, 0, placed), std::vector<std::string>{"b"});
  EXPECT_EQ(ChoosePreemptions(waiting, 1, placed), std::vector<std::string>{"a"});
  EXPECT_TRUE(ChoosePreemptions(waiting, 2, placed).empty()) << "it fits already";
  placed.push_back({"e", 0, 5, true, true, 2});  // already stopping: its devices are coming
  EXPECT_TRUE(ChoosePreemptions(waiting, 0, placed).empty());
  waiting.world_size = 9;
  EXPECT_TRUE(ChoosePreemptions(waiting, 0, placed).empty()) << "not enough even with every candidate";
}

TEST_F(FaultPolicyTest, CoordinatorRestartReissuesStartsAndStopsAndReattachesRanks) {
  AddWorker("w1");
  AddWorker("w2");
  auto scheduled = jm_.Submit("scheduled", 0, 1, "spec");  // placed on w1, order not yet delivered
  auto running = jm_.Submit("running", 0, 1, "spec");      // on w2
  RunAll(running->id);
  ASSERT_TRUE(jm_.Drain("w2", false).ok());  // running is asked to stop
  // The coordinator restarts.
  JobManager restarted(store_.get(), &clock_, Options());
  ASSERT_TRUE(restarted.Recover().ok());
  // w1 re-registers (same incarnation) with nothing running: its lost start is sent again.
  Worker w1;
  w1.id = "w1";
  w1.incarnation = "inc-1";
  w1.address = "w1.local";
  w1.devices.push_back({"cpu", 0, 0});
  ASSERT_TRUE(restarted.RegisterWorker(w1, {}).ok());
  HeartbeatReply r1 = Beat("w1", {}, &restarted);
  ASSERT_EQ(r1.start.size(), 1u);
  EXPECT_EQ(r1.start[0].job_id, scheduled->id);
  // w2 re-registers with its running rank: re-attached, still draining, still asked to stop.
  Worker w2 = w1;
  w2.id = "w2";
  w2.address = "w2.local";
  ASSERT_TRUE(restarted.RegisterWorker(w2, {Report(running->id, 0, Phase::kRunning, 0, 1)}).ok());
  EXPECT_EQ(restarted.Get(running->id)->state, JobState::kRunning);
  HeartbeatReply r2 = Beat("w2", {Report(running->id, 0, Phase::kRunning, 0, 1)}, &restarted);
  EXPECT_EQ(r2.preempt_jobs, std::vector<std::string>{running->id});
  EXPECT_TRUE(r2.cancel_jobs.empty());
  // A rank of a job that ended meanwhile is told to stop (its cancel order was lost).
  ASSERT_TRUE(restarted.Cancel(scheduled->id).ok());
  JobManager again(store_.get(), &clock_, Options());
  ASSERT_TRUE(again.Recover().ok());
  ASSERT_TRUE(again.RegisterWorker(w1, {Report(scheduled->id, 0, Phase::kRunning, 0, 1)}).ok());
  EXPECT_EQ(Beat("w1", {}, &again).cancel_jobs, std::vector<std::string>{scheduled->id});
}

TEST_F(FaultPolicyTest, ANewIncarnationOfAWorkerRestartsItsJobs) {
  AddWorker("w1");
  auto job = jm_.Submit("j", 0, 1, "spec");
  RunAll(job->id);
  AddWorker(jm_, "w1", "inc-2");  // its daemon restarted: the rank died with the old one
  const Job j = *jm_.Get(job->id);
  EXPECT_EQ(j.restarts, 1);
  EXPECT_NE(j.reason.find("restart 1 of 3: worker w1 restarted"), std::string::npos) << j.reason;
}

TEST_F(FaultPolicyTest, SuccessWithoutTheFinalCheckpointIsAFailedAttemptNeverSucceeded) {
  AddWorker("w1");
  auto job = jm_.Submit("claims", 0, 1, "spec");
  RunAll(job->id);
  Metrics(job->id, 1, 1, 20);
  jm_.NoteProgress(job->id, 20);
  Checkpoint(job->id, 10);  // trained to step 20, but only step 10 ever arrived
  Beat("w1", {Report(job->id, 0, Phase::kExited, 0, 1)});
  Job j = *jm_.Get(job->id);
  EXPECT_EQ(j.state, JobState::kPending) << "restarted, not SUCCEEDED";
  EXPECT_EQ(j.resume_step, 10);
  EXPECT_NE(
      j.events.back().reason.find(
          "all ranks reported success but no final checkpoint arrived (latest: step 10, metrics reached step 20)"),
      std::string::npos)
      << j.events.back().reason;
  // With the final checkpoint stored, the next attempt's success counts.
  clock_.AdvanceSeconds(10);  // the restart backoff
  Beat("w1");
  ASSERT_EQ(jm_.Get(job->id)->state, JobState::kScheduled);
  RunAll(job->id);
  Checkpoint(job->id, 20);
  Beat("w1", {Report(job->id, 0, Phase::kExited, 0, 2)});
  EXPECT_EQ(jm_.Get(job->id)->state, JobState::kSucceeded);
}

}  // namespace
}  // namespace polytune::coordinator
