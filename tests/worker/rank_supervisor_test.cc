#include "rank_supervisor.h"

#include <signal.h>

#include <gtest/gtest.h>

#include <filesystem>
#include "fakes.h"

#include "polytune/common/bundle.h"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"

namespace polytune::worker {
namespace {
using namespace testing;

class RankSupervisorTest : public ::testing::Test {
 protected:
  RankSupervisorTest() : coordinator_(&clock_) {
    ranks_ = MakeTestSupervisor(&clock_, &launcher_, &forwarder_, &coordinator_, dirs_.root + "/work",
                                [this](int port) { return busy_port_ != port; });
  }

  RankAssignment Assignment(int rank, const std::string& spec, int attempt = 1) {
    return {"job-1", rank, 2, "127.0.0.1", 29600, spec, attempt};
  }

  FakeClock clock_;
  FakeLauncher launcher_;
  FakeForwarder forwarder_;
  FakeCoordinator coordinator_;
  TempDirs dirs_;
  int busy_port_ = -1;
  std::unique_ptr<RankSupervisor> ranks_;
};

TEST_F(RankSupervisorTest, FetchesArtifactsWritesACanonicalSpecAndStartsTheRank) {
  const std::string data = "{\"text\": \"hola\"}\n";
  const std::string sha = Sha256Hex(data);
  coordinator_.artifacts[sha] = data;
  ranks_->Start(Assignment(0, "model: {path: " + dirs_.root + "/model}\ndata: {train: {sha256: " + sha +
                                  ", name: notes_es.jsonl}}\nresources: {world_size: 2}\n"));
  ASSERT_EQ(launcher_.spawned.size(), 1u);
  const SpawnOptions& so = launcher_.spawned.begin()->second;
  EXPECT_EQ(so.argv[1], "train");
  const std::string spec_path = so.argv[2];
  auto text = ReadFileToString(spec_path);
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find(dirs_.root + "/work/cache/" + sha + "/notes_es.jsonl"), std::string::npos) << *text;
  EXPECT_NE(text->find("output_dir:"), std::string::npos) << *text;
  EXPECT_EQ(*ReadFileToString(dirs_.root + "/work/cache/" + sha + "/notes_es.jsonl"), data);
  auto reports = ranks_->Reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].phase, RankReport::Phase::kRunning);
}

TEST_F(RankSupervisorTest, CancelEscalatesToSigkillAfterTheGracePeriod) {
  launcher_.ignore_sigterm = true;
  ranks_->Start(Assignment(1, SpecFor(dirs_.root + "/model", "/data/train.jsonl")));
  ASSERT_EQ(launcher_.spawned.size(), 1u);
  const pid_t pid = launcher_.spawned.begin()->first;
  ranks_->Cancel("job-1");
  ASSERT_EQ(launcher_.signals.size(), 1u);
  EXPECT_EQ(launcher_.signals[0], std::make_pair(pid, SIGTERM));
  clock_.AdvanceMicros(4'999'999);
  ranks_->Poll();
  EXPECT_EQ(launcher_.signals.size(), 1u) << "no SIGKILL inside the grace period";
  clock_.AdvanceMicros(1);
  ranks_->Poll();
  ASSERT_EQ(launcher_.signals.size(), 2u);
  EXPECT_EQ(launcher_.signals[1], std::make_pair(pid, SIGKILL));
  ranks_->Poll();  // reaps it
  auto reports = ranks_->Reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].phase, RankReport::Phase::kExited);
  EXPECT_EQ(reports[0].message, "cancelled");
  EXPECT_FALSE(ranks_->HasLiveProcesses());
}

TEST_F(RankSupervisorTest, CrashIsReportedWithItsLastErrorLineUntilAcknowledged) {
  ranks_->Start(Assignment(1, SpecFor(dirs_.root + "/model", "/data/train.jsonl")));
  const pid_t pid = launcher_.spawned.begin()->first;
  const std::string log = launcher_.spawned.begin()->second.output_path;
  ASSERT_TRUE(
      WriteFileAtomic(log, "step 1/9\npolytune: error: first\nstep 2/9\npolytune: error: out of memory\n").ok());
  launcher_.exits[pid] = ExitStatus{false, 1, 0};
  ranks_->Poll();  // reaped; results forwarded (the fake finishes at once)
  ranks_->Poll();
  auto reports = ranks_->Reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].phase, RankReport::Phase::kExited);
  EXPECT_EQ(reports[0].exit_code, 1);
  EXPECT_EQ(reports[0].message, "polytune: error: out of memory");
  EXPECT_EQ(ranks_->Reports().size(), 1u) << "still reported while no heartbeat carried it";
  std::filesystem::create_directories(dirs_.root + "/work/jobs/job-1/rank-1/out/checkpoints/step-2");
  ranks_->Acknowledge(reports);
  EXPECT_TRUE(ranks_->Reports().empty()) << "reported once, then forgotten";
  EXPECT_FALSE(std::filesystem::exists(dirs_.root + "/work/jobs/job-1/rank-1/out")) << "its results were delivered";
  EXPECT_TRUE(std::filesystem::exists(log)) << "its log stays for people on the host";
}

TEST_F(RankSupervisorTest, RanksThatCannotStartSayWhy) {
  ranks_->Start(Assignment(1, "model: {path: /nope}\ndata: {train: /t}\nresources: {world_size: 2}\n"));
  auto r = ranks_->Reports();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].phase, RankReport::Phase::kExited);
  EXPECT_NE(r[0].message.find("model path '/nope' does not exist on worker w1"), std::string::npos) << r[0].message;
  busy_port_ = 29600;
  ranks_->Start({"job-2", 0, 2, "127.0.0.1", 29600, SpecFor(dirs_.root + "/model", "/t"), 1});
  r = ranks_->Reports();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_TRUE(r[1].rendezvous_port_busy);
  ranks_->Start({"job-3", 1, 2, "127.0.0.1", 29600, "model: {path: /m}\nbogus: 1\n", 1});
  r = ranks_->Reports();
  ASSERT_EQ(r.size(), 3u);
  EXPECT_NE(r[2].message.find("'bogus' is not a known key"), std::string::npos) << r[2].message;
  EXPECT_TRUE(launcher_.spawned.empty());
}

TEST_F(RankSupervisorTest, Rank0ExitingWithThePortBusyCodeIsReportedAsABusyPort) {
  ranks_->Start(Assignment(0, SpecFor(dirs_.root + "/model", "/data/train.jsonl")));
  launcher_.exits[launcher_.spawned.begin()->first] = ExitStatus{false, 3, 0};
  ranks_->Poll();
  ranks_->Poll();
  auto r = ranks_->Reports();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].phase, RankReport::Phase::kExited);
  EXPECT_TRUE(r[0].rendezvous_port_busy);
  EXPECT_NE(r[0].message.find("rendezvous port 29600 is taken by another process"), std::string::npos) << r[0].message;
}

TEST_F(RankSupervisorTest, ResumeFetchesTheVerifiedCheckpointAndEveryPlacementStartsClean) {
  // A checkpoint archive as the coordinator stores it.
  const std::string ck = dirs_.root + "/ck";
  std::filesystem::create_directories(ck);
  ASSERT_TRUE(WriteFileAtomic(ck + "/trainer_state.json", "{\"step\": 30}").ok());
  auto bundle = PackDirectory(ck);
  ASSERT_TRUE(bundle.ok());
  const std::string sha = Sha256Hex(*bundle);
  coordinator_.artifacts[sha] = *bundle;
  const std::string spec = SpecFor(dirs_.root + "/model", "/data/train.jsonl");
  ranks_->Start(Assignment(0, spec, 1));
  const std::string dir = dirs_.root + "/work/jobs/job-1/rank-0";
  std::filesystem::create_directories(dir + "/out/checkpoints/step-000040");  // left by attempt 1
  RankAssignment resumed = Assignment(0, spec, 2);
  resumed.resume_sha256 = sha;
  resumed.resume_step = 30;
  ranks_->Start(resumed);
  ASSERT_EQ(launcher_.spawned.size(), 2u);
  const std::vector<std::string>& argv = launcher_.spawned.rbegin()->second.argv;
  ASSERT_GE(argv.size(), 2u);
  EXPECT_EQ(argv[argv.size() - 2], "--resume");
  EXPECT_EQ(argv.back(), dir + "/resume");
  EXPECT_EQ(*ReadFileToString(dir + "/resume/trainer_state.json"), "{\"step\": 30}");
  EXPECT_FALSE(std::filesystem::exists(dir + "/out/checkpoints/step-000040")) << "nothing of attempt 1 is reused";
  // A corrupted archive is refused before anything runs; another try may fetch it whole.
  RankAssignment corrupt = Assignment(1, spec, 3);
  corrupt.resume_sha256 = Sha256Hex("something else");
  coordinator_.artifacts[corrupt.resume_sha256] = *bundle;
  ranks_->Start(corrupt);
  auto r = ranks_->Reports();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].phase, RankReport::Phase::kExited);
  EXPECT_EQ(r[1].exit_code, 1);
  EXPECT_NE(r[1].message.find("arrived corrupted"), std::string::npos) << r[1].message;
}

TEST_F(RankSupervisorTest, PreemptLetsTheRankCheckpointAndForwardsItsResultsFirst) {
  launcher_.ignore_sigterm = true;
  ranks_->Start(Assignment(0, SpecFor(dirs_.root + "/model", "/data/train.jsonl")));
  const pid_t pid = launcher_.spawned.begin()->first;
  ranks_->Preempt("job-1");
  ranks_->Preempt("job-1");  // repeated orders are ignored
  ASSERT_EQ(launcher_.signals.size(), 1u);
  EXPECT_EQ(launcher_.signals[0], std::make_pair(pid, SIGTERM));
  clock_.AdvanceMicros(60'000'000);
  ranks_->Poll();
  EXPECT_EQ(launcher_.signals.size(), 1u) << "a step may take a while: no SIGKILL within the preempt grace";
  EXPECT_EQ(forwarder_.tracked.count("job-1/0"), 1u) << "its checkpoint is still to be forwarded";
  launcher_.exits[pid] = ExitStatus{false, 4, 0};
  ranks_->Poll();
  EXPECT_EQ(forwarder_.finished.count("job-1/0"), 1u);
  ranks_->Poll();
  auto r = ranks_->Reports();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].phase, RankReport::Phase::kExited);
  EXPECT_EQ(r[0].exit_code, 4);
}

TEST_F(RankSupervisorTest, WhatCannotStartForAWrongSpecOrModelIsBadInput) {
  ranks_->Start(Assignment(1, "model: {path: /nope}\ndata: {train: /t}\nresources: {world_size: 2}\n"));
  auto r = ranks_->Reports();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].exit_code, 2) << "a restart would not make the model appear";
}

TEST_F(RankSupervisorTest, ModelsOutsideTheModelRootsAreRefusedNamingThePath) {
  SupervisorOptions o;
  o.worker_name = "w1";
  o.work_dir = dirs_.root + "/work";
  o.polytune_bin = "/usr/bin/polytune";
  o.model_roots = {dirs_.root + "/models"};
  std::filesystem::create_directories(dirs_.root + "/models/llama");
  std::filesystem::create_directories(dirs_.root + "/secret");
  ASSERT_TRUE(WriteFileAtomic(dirs_.root + "/models/llama/config.json", "{}").ok());
  std::filesystem::create_symlink(dirs_.root + "/secret", dirs_.root + "/models/escape");
  SupervisorDeps d;
  d.clock = &clock_;
  d.launcher = &launcher_;
  d.forwarder = &forwarder_;
  d.download = [this](const std::string& sha) { return coordinator_.Download(sha); };
  d.port_is_free = [](int) { return true; };
  RankSupervisor confined(o, d);
  int rank = 0;
  for (const std::string& path :
       {dirs_.root + "/models/../secret", dirs_.root + "/models/escape", std::string("/etc")}) {
    confined.Start({"job-" + std::to_string(rank), 1, 2, "127.0.0.1", 29600,
                    "model: {path: " + path + "}\ndata: {train: /t}\nresources: {world_size: 2}\n", 1});
    auto r = confined.Reports();
    ASSERT_EQ(r.size(), static_cast<size_t>(rank + 1));
    EXPECT_EQ(r.back().exit_code, 2) << path;
    EXPECT_NE(r.back().message.find("is outside this worker's --model-root"), std::string::npos) << r.back().message;
    // Named as it resolves (the spec parser already folds "..", the check follows symlinks).
    const std::string resolved = path == "/etc" ? path : dirs_.root + "/secret";
    EXPECT_NE(r.back().message.find("(" + resolved + ")"), std::string::npos) << r.back().message;
    ++rank;
  }
  EXPECT_TRUE(launcher_.spawned.empty());
  confined.Start({"job-ok", 1, 2, "127.0.0.1", 29600, SpecFor(dirs_.root + "/models/llama", "/data/train.jsonl"), 1});
  EXPECT_EQ(launcher_.spawned.size(), 1u) << "a model under the root starts";
}

TEST_F(RankSupervisorTest, LastErrorLineFindsTheLastOne) {
  EXPECT_EQ(LastErrorLine("a\nerror: x\nb\nerror: y\nc\n"), "error: y");
  EXPECT_EQ(LastErrorLine("all fine\n"), "");
}

}  // namespace
}  // namespace polytune::worker
