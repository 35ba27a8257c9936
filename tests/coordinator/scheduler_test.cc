#include "polytune/coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "polytune/common/clock.h"
#include "polytune/coordinator/worker_registry.h"

namespace polytune::coordinator {
namespace {

Job MakeJob(const std::string& id, int32_t world, int32_t priority, int64_t seq) {
  Job j;
  j.id = id;
  j.world_size = world;
  j.priority = priority;
  j.sequence = seq;
  return j;
}

TEST(Scheduler, GangIsAllOrNothingAndSpansFewestWorkers) {
  auto d = DecideSchedule({MakeJob("a", 3, 0, 1)}, {{"w1", 2, 2}, {"w2", 4, 4}});
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].rank_workers, (std::vector<std::string>{"w2", "w2", "w2"}));
  auto none = DecideSchedule({MakeJob("b", 4, 0, 1)}, {{"w1", 2, 2}, {"w2", 2, 1}});
  EXPECT_TRUE(none.placements.empty());
  EXPECT_EQ(none.WaitingReason("b"), "needs 4 devices; the largest free gang is 3");
}

TEST(Scheduler, PriorityThenFifo) {
  auto d =
      DecideSchedule({MakeJob("old", 1, 0, 1), MakeJob("urgent", 1, 5, 3), MakeJob("new", 1, 0, 2)}, {{"w", 2, 2}});
  ASSERT_EQ(d.placements.size(), 2u);
  EXPECT_EQ(d.placements[0].job_id, "urgent");
  EXPECT_EQ(d.placements[1].job_id, "old");
  EXPECT_EQ(d.WaitingReason("new"), "needs 1 device; the largest free gang is 0");
}

TEST(Scheduler, JobLargerThanClusterWaitsWithReasonAndBlocksNobody) {
  auto d = DecideSchedule({MakeJob("huge", 8, 9, 1), MakeJob("small", 1, 0, 2)}, {{"w1", 2, 2}, {"w2", 2, 2}});
  EXPECT_EQ(d.WaitingReason("huge"),
            "needs 8 devices; the cluster has 4 in all (add workers or lower resources.world_size)");
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].job_id, "small");
}

TEST(Scheduler, BlockedHeadHoldsFreeDevicesAgainstSmallerJobs) {
  // 4 devices, 2 busy. The head needs 4: the 2 free ones are held for it.
  auto d = DecideSchedule({MakeJob("big", 4, 0, 1), MakeJob("small", 1, 0, 2)}, {{"w1", 2, 0}, {"w2", 2, 2}});
  EXPECT_TRUE(d.placements.empty());
  EXPECT_EQ(d.WaitingReason("big"), "needs 4 devices; the largest free gang is 2");
  EXPECT_NE(d.WaitingReason("small").find("held for job big"), std::string::npos);
}

// A simulated cluster under a fake clock: small jobs arrive every second and run 3 s each;
// a 4-rank job submitted early must start once the devices drain, not starve.
TEST(Scheduler, StreamOfSmallJobsDoesNotStarveALargeOne) {
  FakeClock clock;
  struct Running {
    std::string id;
    std::vector<std::string> workers;
    int64_t ends;
  };
  std::vector<Running> running;
  std::vector<Job> pending;
  std::map<std::string, int32_t> total = {{"w1", 2}, {"w2", 2}};
  int64_t seq = 0;
  int64_t big_started_at = -1;
  const int64_t t0 = clock.NowMicros();
  for (int tick = 0; tick < 60 && big_started_at < 0; ++tick) {
    // Finish jobs whose time is up.
    running.erase(
        std::remove_if(running.begin(), running.end(), [&](const Running& r) { return r.ends <= clock.NowMicros(); }),
        running.end());
    pending.push_back(MakeJob("small-" + std::to_string(tick), 1, 0, ++seq));
    if (tick == 2) pending.push_back(MakeJob("big", 4, 0, ++seq));
    std::map<std::string, int32_t> used;
    for (const auto& r : running)
      for (const auto& w : r.workers) ++used[w];
    std::vector<WorkerCapacity> caps;
    for (const auto& [id, n] : total) caps.push_back({id, n, n - used[id]});
    ScheduleDecision d = DecideSchedule(pending, caps);
    for (const auto& p : d.placements) {
      if (p.job_id == "big") big_started_at = clock.NowMicros() - t0;
      running.push_back({p.job_id, p.rank_workers, clock.NowMicros() + 3'000'000});
      pending.erase(std::remove_if(pending.begin(), pending.end(), [&](const Job& j) { return j.id == p.job_id; }),
                    pending.end());
    }
    clock.AdvanceSeconds(1);
  }
  ASSERT_GE(big_started_at, 0) << "the 4-rank job never started";
  // Submitted at t=2 s behind at most 4 running 3-second jobs: it starts by t=5 s.
  EXPECT_LE(big_started_at, 5'000'000);
}

TEST(WorkerRegistry, SilentWorkersAreLostAfterTheTimeout) {
  FakeClock clock;
  WorkerRegistry reg(&clock, 10'000'000);
  Worker w;
  w.id = "w1";
  w.incarnation = "inc-a";
  w.devices = {{"cpu", 0, 0}};
  EXPECT_TRUE(reg.Register(w).empty());
  clock.AdvanceSeconds(9.999);
  EXPECT_TRUE(reg.ExpireSilent().empty());
  ASSERT_TRUE(reg.Heartbeat("w1", "inc-a").ok());
  clock.AdvanceSeconds(10.0);
  EXPECT_TRUE(reg.ExpireSilent().empty()) << "exactly the timeout is not yet past it";
  clock.AdvanceMicros(1);
  EXPECT_EQ(reg.ExpireSilent(), std::vector<std::string>{"w1"});
  EXPECT_TRUE(reg.Alive().empty());
  EXPECT_NE(reg.Heartbeat("w1", "inc-a").message().find("declared lost"), std::string::npos);
}

TEST(WorkerRegistry, NewIncarnationSupersedesTheOldOne) {
  FakeClock clock;
  WorkerRegistry reg(&clock, 10'000'000);
  Worker w;
  w.id = "w1";
  w.incarnation = "inc-a";
  reg.Register(w);
  w.incarnation = "inc-b";
  EXPECT_EQ(reg.Register(w), std::vector<std::string>{"w1"});
  EXPECT_NE(reg.Heartbeat("w1", "inc-a").message().find("superseded"), std::string::npos);
  EXPECT_TRUE(reg.Heartbeat("w1", "inc-b").ok());
  EXPECT_NE(reg.Heartbeat("w9", "x").message().find("not registered"), std::string::npos);
}

TEST(JobState, LifecycleTransitions) {
  EXPECT_TRUE(IsAllowedTransition(JobState::kPending, JobState::kScheduled));
  EXPECT_TRUE(IsAllowedTransition(JobState::kScheduled, JobState::kRunning));
  EXPECT_TRUE(IsAllowedTransition(JobState::kRunning, JobState::kSucceeded));
  EXPECT_TRUE(IsAllowedTransition(JobState::kPending, JobState::kCancelled));
  EXPECT_TRUE(IsAllowedTransition(JobState::kRunning, JobState::kFailed));
  EXPECT_FALSE(IsAllowedTransition(JobState::kPending, JobState::kRunning));
  EXPECT_FALSE(IsAllowedTransition(JobState::kPending, JobState::kSucceeded));
  EXPECT_FALSE(IsAllowedTransition(JobState::kSucceeded, JobState::kFailed));
  EXPECT_FALSE(IsAllowedTransition(JobState::kCancelled, JobState::kPending));
  EXPECT_STREQ(JobStateName(JobState::kCancelled), "CANCELLED");
}

// The placement loop as it was before the free-device index (sort every worker by free
// devices for each placement): the reference the indexed policy must equal exactly.
ScheduleDecision ReferenceDecideSchedule(const std::vector<Job>& pending, const std::vector<WorkerCapacity>& workers) {
  std::vector<const Job*> order;
  for (const auto& j : pending) order.push_back(&j);
  std::stable_sort(order.begin(), order.end(), [](const Job* a, const Job* b) {
    return a->priority != b->priority ? a->priority > b->priority : a->sequence < b->sequence;
  });
  std::vector<WorkerCapacity> free = workers;
  int32_t cluster_total = 0, free_total = 0;
  for (const auto& w : free) {
    cluster_total += w.total;
    free_total += w.free;
  }
  int32_t held = 0;
  const Job* first_blocked = nullptr;
  ScheduleDecision d;
  auto devices = [](int32_t n) { return std::to_string(n) + (n == 1 ? " device" : " devices"); };
  for (const Job* job : order) {
    const int32_t need = job->world_size;
    if (need > cluster_total) {
      d.waiting.emplace_back(job->id, "needs " + devices(need) + "; the cluster has " + std::to_string(cluster_total) +
                                          " in all (add workers or lower resources.world_size)");
      continue;
    }
    const int32_t available = free_total - held;
    if (need <= available) {
      std::vector<size_t> idx(free.size());
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
      std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return free[a].free > free[b].free; });
      Placement p{job->id, {}};
      for (size_t i : idx) {
        while (free[i].free > 0 && static_cast<int32_t>(p.rank_workers.size()) < need) {
          p.rank_workers.push_back(free[i].id);
          --free[i].free;
        }
      }
      free_total -= need;
      d.placements.push_back(std::move(p));
      continue;
    }
    if (!first_blocked) {
      d.waiting.emplace_back(job->id,
                             "needs " + devices(need) + "; the largest free gang is " + std::to_string(available));
      first_blocked = job;
    } else {
      d.waiting.emplace_back(job->id, "needs " + devices(need) + "; " + std::to_string(available) +
                                          " free but held for job " + first_blocked->id + " ahead in the queue");
    }
    held += std::min(need, available);
  }
  return d;
}

TEST(Scheduler, IndexedPlacementEqualsTheSortingPolicyOnRandomClusters) {
  std::mt19937 gen(17);
  int placements = 0, multi_worker = 0;
  for (int round = 0; round < 300; ++round) {
    std::vector<Job> pending(1 + gen() % 60);
    for (size_t i = 0; i < pending.size(); ++i)
      pending[i] = MakeJob("j" + std::to_string(i), 1 + static_cast<int32_t>(gen() % 12),
                           static_cast<int32_t>(gen() % 3), static_cast<int64_t>(gen() % 1000));
    std::vector<WorkerCapacity> workers(1 + gen() % 40);
    for (size_t i = 0; i < workers.size(); ++i) {
      const int32_t total = 1 + static_cast<int32_t>(gen() % 8);
      workers[i] = {"w" + std::to_string(i), total, static_cast<int32_t>(gen() % (total + 1))};
    }
    const ScheduleDecision a = DecideSchedule(pending, workers), b = ReferenceDecideSchedule(pending, workers);
    ASSERT_EQ(a.placements.size(), b.placements.size()) << "round " << round;
    for (size_t i = 0; i < a.placements.size(); ++i) {
      EXPECT_EQ(a.placements[i].job_id, b.placements[i].job_id) << "round " << round;
      EXPECT_EQ(a.placements[i].rank_workers, b.placements[i].rank_workers) << "round " << round;
      multi_worker +=
          std::set<std::string>(a.placements[i].rank_workers.begin(), a.placements[i].rank_workers.end()).size() > 1;
    }
    EXPECT_EQ(a.waiting, b.waiting) << "round " << round;
    for (const auto& [id, why] : b.waiting) EXPECT_EQ(a.WaitingReason(id), why);
    placements += static_cast<int>(a.placements.size());
  }
  EXPECT_GT(placements, 500) << "the rounds must place enough gangs to compare";
  EXPECT_GT(multi_worker, 50) << "and gangs spanning several workers";
}

}  // namespace
}  // namespace polytune::coordinator
