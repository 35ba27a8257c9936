// The worker daemon's loop under a fake clock: every wait is what RunOnce asked for, and
// time only moves when the test moves it.
#include "worker_agent.h"

#include <signal.h>

#include <gtest/gtest.h>

#include "fakes.h"

namespace polytune::worker {
namespace {
using namespace testing;

class WorkerAgentTest : public ::testing::Test {
 protected:
  WorkerAgentTest() : coordinator_(&clock_) {
    ranks_ = MakeTestSupervisor(&clock_, &launcher_, &forwarder_, &coordinator_, dirs_.root + "/work",
                                [](int) { return true; });
    AgentOptions ao;
    ao.registration.worker_id = "w1";
    ao.registration.incarnation = "inc";
    agent_ = std::make_unique<WorkerAgent>(ao, &clock_, &coordinator_, ranks_.get());
  }

  // Runs the loop until `micros` of fake time have passed, sleeping exactly as asked.
  void RunFor(int64_t micros) {
    const int64_t end = clock_.SteadyNowMicros() + micros;
    while (clock_.SteadyNowMicros() < end) {
      const int64_t wait = agent_->RunOnce();
      ASSERT_GE(wait, 0);
      clock_.AdvanceMicros(std::min(std::max<int64_t>(wait, 1), end - clock_.SteadyNowMicros()));
    }
  }

  static std::vector<int64_t> Gaps(const std::vector<int64_t>& times) {
    std::vector<int64_t> out;
    for (size_t i = 1; i < times.size(); ++i) out.push_back(times[i] - times[i - 1]);
    return out;
  }

  FakeClock clock_;
  FakeLauncher launcher_;
  FakeForwarder forwarder_;
  FakeCoordinator coordinator_;
  TempDirs dirs_;
  std::unique_ptr<RankSupervisor> ranks_;
  std::unique_ptr<WorkerAgent> agent_;
};

TEST_F(WorkerAgentTest, HeartbeatsFollowTheCoordinatorsInterval) {
  coordinator_.interval_micros = 250'000;
  RunFor(2'000'000);
  ASSERT_EQ(coordinator_.register_times.size(), 1u);
  ASSERT_GE(coordinator_.heartbeat_times.size(), 8u);
  for (int64_t gap : Gaps(coordinator_.heartbeat_times)) EXPECT_EQ(gap, 250'000);
  EXPECT_EQ(agent_->heartbeat_interval_micros(), 250'000);
}

TEST_F(WorkerAgentTest, LostCoordinatorIsRetriedWithExponentialBackoff) {
  coordinator_.register_failures = 6;
  RunFor(60'000'000);
  ASSERT_GE(coordinator_.register_times.size(), 7u);
  const std::vector<int64_t> gaps = Gaps(coordinator_.register_times);
  EXPECT_EQ(gaps[0], 500'000);
  EXPECT_EQ(gaps[1], 1'000'000);
  EXPECT_EQ(gaps[2], 2'000'000);
  EXPECT_EQ(gaps[3], 4'000'000);
  EXPECT_EQ(gaps[4], 8'000'000);
  EXPECT_EQ(gaps[5], 10'000'000) << "capped";
  EXPECT_TRUE(agent_->registered());
  EXPECT_EQ(coordinator_.register_times.size(), 7u) << "no registration once one succeeded";
}

TEST_F(WorkerAgentTest, ARegisteredWorkerRetriesWithinTwoHeartbeatsWhileTheCoordinatorIsAway) {
  RunFor(1'000'000);  // registered; heartbeats every 250 ms
  ASSERT_TRUE(agent_->registered());
  for (int i = 0; i < 8; ++i) coordinator_.heartbeat_status.push_back(absl::UnavailableError("coordinator down"));
  const size_t before = coordinator_.heartbeat_times.size();
  RunFor(6'000'000);
  const std::vector<int64_t> gaps =
      Gaps(std::vector<int64_t>(coordinator_.heartbeat_times.begin() + static_cast<std::ptrdiff_t>(before) - 1,
                                coordinator_.heartbeat_times.end()));
  ASSERT_GE(gaps.size(), 6u);
  for (int64_t g : gaps) EXPECT_LE(g, 500'000) << "a restarted coordinator would declare it lost after 1 s";
}

TEST_F(WorkerAgentTest, UnknownToTheCoordinatorRegistersAgain) {
  RunFor(1'000'000);
  coordinator_.heartbeat_status = {absl::FailedPreconditionError("register again")};
  RunFor(1'000'000);
  EXPECT_EQ(coordinator_.register_times.size(), 2u);
  EXPECT_TRUE(agent_->registered());
}

TEST_F(WorkerAgentTest, CancelOrderEscalatesToSigkillAndTheExitIsReportedOnce) {
  launcher_.ignore_sigterm = true;
  coordinator_.next_orders.start.push_back(
      {"job-1", 1, 2, "127.0.0.1", 29600, SpecFor(dirs_.root + "/model", "/data/t.jsonl"), 1});
  RunFor(300'000);
  ASSERT_EQ(launcher_.spawned.size(), 1u);
  const pid_t pid = launcher_.spawned.begin()->first;
  coordinator_.next_orders.cancel_jobs.push_back("job-1");
  RunFor(300'000);
  ASSERT_FALSE(launcher_.signals.empty());
  const int64_t term_at = clock_.SteadyNowMicros();
  EXPECT_EQ(launcher_.signals[0], std::make_pair(pid, SIGTERM));
  RunFor(4'500'000);
  EXPECT_EQ(launcher_.signals.size(), 1u) << "still within the 5 s grace period";
  RunFor(1'000'000);
  ASSERT_EQ(launcher_.signals.size(), 2u);
  EXPECT_EQ(launcher_.signals[1], std::make_pair(pid, SIGKILL));
  (void)term_at;
  RunFor(2'000'000);
  int exits = 0;
  for (const auto& beat : coordinator_.heartbeats)
    for (const auto& r : beat) exits += r.phase == RankReport::Phase::kExited;
  EXPECT_EQ(exits, 1) << "the exit travels in exactly one successful heartbeat";
}

TEST_F(WorkerAgentTest, ShutdownCheckpointsEveryRankAndStopsOnceTheirExitsAreReported) {
  coordinator_.next_orders.start.push_back(
      {"job-1", 0, 1, "127.0.0.1", 29600, SpecFor(dirs_.root + "/model", "/data/t.jsonl"), 1});
  RunFor(300'000);
  ASSERT_TRUE(ranks_->HasLiveProcesses());
  launcher_.ignore_sigterm = true;  // the rank finishes its step and checkpoints first
  agent_->BeginShutdown();
  const pid_t pid = launcher_.spawned.begin()->first;
  ASSERT_EQ(launcher_.signals.back(), std::make_pair(pid, SIGTERM));
  RunFor(1'000'000);
  EXPECT_FALSE(agent_->Stopped()) << "the rank is still writing its checkpoint";
  EXPECT_TRUE(coordinator_.shutting_down_flags.back()) << "the coordinator hears at once: no new ranks here";
  launcher_.exits[pid] = ExitStatus{false, 4, 0};  // kExitPreempted
  RunFor(1'000'000);
  EXPECT_TRUE(agent_->Stopped());
  bool reported = false;
  for (const auto& beat : coordinator_.heartbeats)
    for (const auto& r : beat) reported |= r.phase == RankReport::Phase::kExited && r.exit_code == 4;
  EXPECT_TRUE(reported) << "its exit reached the coordinator before the daemon stopped";
  for (const auto& [p, sig] : launcher_.signals) EXPECT_NE(sig, SIGKILL);
}

}  // namespace
}  // namespace polytune::worker
