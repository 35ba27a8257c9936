// Fault-invisible jobs, end to end with real processes on loopback: a coordinator and three
// CPU workers (one device each), jobs of two ranks. Whatever is killed, drained or preempted,
// a job ends SUCCEEDED with the adapter of an uninterrupted run of its spec, byte for byte,
// and each of its steps appears once in its metrics.
//
// The workers run `polytune` with a test-only step seam (tests/support/): while the file
// $POLYTUNE_TEST_CRASH_FILE holds "RANK STEP", that rank of every run kills itself there.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "../engine/test_util.h"
#include "nlohmann/json.hpp"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"
#include "process_util.h"

namespace polytune {
namespace {

namespace fs = std::filesystem;
using testing::kBin;
using testing::Shell;
using testing::ShellResult;
using testing::Spawn;
const std::string kFaultBin = POLYTUNE_FAULT_BIN;
using testing::kBuild;
const std::string kExamples = POLYTUNE_EXAMPLES;
constexpr int kSteps = 40;

class FaultTolerance : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char t[] = "/tmp/polytune-ft-XXXXXX";
    dir_ = ::mkdtemp(t);
    crash_file_ = dir_ + "/crash";
    ::setenv("POLYTUNE_TEST_CRASH_FILE", crash_file_.c_str(), 1);  // the workers inherit it
    pace_file_ = dir_ + "/pace";
    ::setenv("POLYTUNE_TEST_PACE_FILE", pace_file_.c_str(), 1);
    target_ = "127.0.0.1:" + std::to_string(testing::FreePort());
    rendezvous_first_ = 21000 + static_cast<int>(::getpid() % 800) * 10;
    StartCoordinator();
    for (int i = 1; i <= 3; ++i) StartWorker(i);
    ShellResult init = Shell(kBin + " model init --out " + dir_ +
                             "/model --hidden-size 64 --layers 2 --heads 4 --kv-heads 2 --intermediate-size 128 "
                             "--vocab-size 320 --seed 5");
    ASSERT_EQ(init.code, 0) << init.output;
    ASSERT_TRUE(WaitForWorkers(3));
    // The uninterrupted run every faulty one must match.
    const std::string id = Submit(Spec("reference"));
    ASSERT_EQ(WaitEnded(id)["state"], "SUCCEEDED") << Cli("status " + id).output;
    reference_sha_ = AdapterSha(id);
    ASSERT_FALSE(reference_sha_.empty());
  }

  static void TearDownTestSuite() {
    for (auto& [i, pid] : workers_) ::kill(pid, SIGKILL);
    for (auto& [i, pid] : workers_) ::waitpid(pid, nullptr, 0);
    ::kill(coordinator_, SIGKILL);
    ::waitpid(coordinator_, nullptr, 0);
    if (!::testing::Test::HasFailure()) fs::remove_all(dir_);
  }

  static void StartCoordinator() {
    coordinator_ =
        Spawn({kBuild + "/coordinator/polytune-coordinator", "--listen", target_, "--data-dir", dir_ + "/coord",
               "--heartbeat-timeout", "3s", "--restart-backoff", "1s", "--metrics-listen", "127.0.0.1:0"},
              dir_ + "/coord.log");
  }

  static void StartWorker(int i) {
    const std::string name = "w" + std::to_string(i);
    workers_[i] =
        Spawn({kBuild + "/worker/daemon/polytune-worker", "--coordinator", target_, "--work-dir", dir_ + "/" + name,
               "--devices", "cpu:1", "--name", name, "--polytune-bin", kFaultBin, "--rendezvous-ports",
               std::to_string(rendezvous_first_) + "-" + std::to_string(rendezvous_first_ + 9), "--metrics-listen",
               "127.0.0.1:0"},
              dir_ + "/" + name + ".log");
  }

  static void Kill(pid_t pid, int sig) {
    ::kill(pid, sig);
    ::waitpid(pid, nullptr, 0);
  }

  static ShellResult Cli(const std::string& args) { return Shell(kBin + " --coordinator " + target_ + " " + args); }

  static bool WaitForWorkers(int n) {
    for (int i = 0; i < 200; ++i) {
      ShellResult w = Cli("workers --json");
      int alive = 0;
      if (w.code == 0)
        for (const auto& x : nlohmann::json::parse(w.output)) alive += x["alive"].get<bool>();
      if (alive == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // Each step takes long enough on CPU that a fault lands mid-job.
  static std::string Spec(const std::string& name, const std::string& resources = "") {
    const std::string path = dir_ + "/" + name + ".yaml";
    std::ofstream(path) << "model: {path: " << dir_ << "/model}\n"
                        << "lora: {r: 4, alpha: 8, dropout: 0.1}\n"
                        << "data: {train: " << kExamples << "/data/instructions_train.jsonl, eval: " << kExamples
                        << "/data/instructions_eval.jsonl, max_seq_len: 128}\n"
                        << "training: {lr: 0.002, seed: 3, max_steps: " << kSteps
                        << ", micro_batch_size: 2, grad_accum_steps: 2, checkpoint_every: 4, eval_every: 10}\n"
                        << "resources: {world_size: 2" << resources << "}\n";
    return path;
  }

  static std::string Submit(const std::string& spec, int priority = 0) {
    ShellResult r = Cli("submit " + spec + " --json --priority " + std::to_string(priority));
    EXPECT_EQ(r.code, 0) << r.output;
    return r.code == 0 ? nlohmann::json::parse(r.output)["id"].get<std::string>() : "";
  }

  static nlohmann::json Status(const std::string& id) {
    for (int i = 0; i < 100; ++i) {  // the coordinator may be restarting
      ShellResult r = Cli("status " + id + " --json");
      if (r.code == 0) return nlohmann::json::parse(r.output);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return nlohmann::json::object();
  }

  static nlohmann::json WaitEnded(const std::string& id, int seconds = 240) {
    nlohmann::json st;
    for (int i = 0; i < seconds * 5; ++i) {
      st = Status(id);
      const std::string s = st.value("state", "");
      if (s == "SUCCEEDED" || s == "FAILED" || s == "CANCELLED") return st;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ADD_FAILURE() << id << " did not end: " << st.dump();
    return st;
  }

  // Waits until the job's current placement reported at least `step` steps.
  static bool WaitStep(const std::string& id, int64_t step) {
    for (int i = 0; i < 1500; ++i) {
      nlohmann::json st = Status(id);
      if (st.contains("latest_metrics") && st["latest_metrics"].is_object() &&
          st["latest_metrics"].value("step", 0) >= step && st["state"] == "RUNNING")
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  static std::string AdapterSha(const std::string& id) {
    const std::string out = dir_ + "/dl-" + id;
    ShellResult dl = Cli("download " + id + " --out " + out);
    EXPECT_EQ(dl.code, 0) << dl.output;
    auto bytes = ReadFileToString(out + "/adapter_model.safetensors");
    return bytes.ok() ? Sha256Hex(*bytes) : "";
  }

  static std::string Events(const nlohmann::json& st) {
    std::string out;
    for (const auto& e : st["events"])
      out += e["state"].get<std::string>() + ": " + e["reason"].get<std::string>() + "\n";
    return out;
  }

  // Every step record 1..kSteps once, in order, and every eval once.
  static void ExpectEachStepOnce(const std::string& id) {
    ShellResult logs = Cli("logs " + id + " --json");
    ASSERT_EQ(logs.code, 0) << logs.output;
    std::vector<int64_t> steps;
    std::map<int64_t, int> evals;
    std::istringstream in(logs.output);
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_object() || j.value("type", "") != "metrics") continue;
      const auto& r = j["record"];
      if (r.contains("loss") && !r.contains("languages") && !r.contains("ppl"))
        steps.push_back(r["step"].get<int64_t>());
      else
        ++evals[r["step"].get<int64_t>()];
    }
    std::vector<int64_t> expected;
    for (int64_t s = 1; s <= kSteps; ++s) expected.push_back(s);
    EXPECT_EQ(steps, expected) << id << ": each step's record exactly once";
    for (const auto& [step, n] : evals) EXPECT_EQ(n, 1) << id << ": eval at step " << step;
    EXPECT_EQ(evals.size(), 5u) << "evals at 0, 10, 20, 30, 40";
  }

  static int WorkerIndex(const std::string& name) { return std::stoi(name.substr(1)); }

  static inline std::string dir_, target_, crash_file_, pace_file_, reference_sha_;
  static inline int rendezvous_first_ = 0;
  static inline pid_t coordinator_ = -1;
  static inline std::map<int, pid_t> workers_;
};

TEST_F(FaultTolerance, KillNineOfAWorkerAndItsRankRestartsTheJobWithTheSameAdapter) {
  const std::string id = Submit(Spec("worker-kill"));
  ASSERT_TRUE(WaitStep(id, 10));
  const std::string victim = Status(id)["workers"][1];
  Kill(workers_[WorkerIndex(victim)], SIGKILL);          // its rank dies with it
  std::this_thread::sleep_for(std::chrono::seconds(4));  // lost after the 3 s heartbeat timeout
  StartWorker(WorkerIndex(victim));                      // and it comes back later
  const nlohmann::json st = WaitEnded(id);
  ASSERT_EQ(st["state"], "SUCCEEDED") << Events(st);
  // The fault shows first as whichever comes first: the surviving rank losing its peer, or
  // the silent worker declared lost. Either way it is one restart, and the job is not placed
  // on the silent worker meanwhile.
  EXPECT_NE(Events(st).find("restart 1 of 3: "), std::string::npos) << Events(st);
  EXPECT_NE(Events(st).find("resuming from checkpoint step"), std::string::npos) << Events(st);
  EXPECT_EQ(st["restarts"], 1);
  EXPECT_EQ(AdapterSha(id), reference_sha_) << "byte-identical to the uninterrupted run";
  ExpectEachStepOnce(id);
  ASSERT_TRUE(WaitForWorkers(3));
}

TEST_F(FaultTolerance, KillNineOfTheCoordinatorMidJobLosesNothing) {
  const std::string id = Submit(Spec("coordinator-kill"));
  ASSERT_TRUE(WaitStep(id, 8));
  Kill(coordinator_, SIGKILL);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the ranks train on meanwhile
  StartCoordinator();
  const nlohmann::json st = WaitEnded(id);
  ASSERT_EQ(st["state"], "SUCCEEDED") << Events(st);
  EXPECT_EQ(st["restarts"], 0) << "the ranks were re-attached, not restarted: " << Events(st);
  EXPECT_EQ(AdapterSha(id), reference_sha_);
  ExpectEachStepOnce(id);
  std::vector<int64_t> steps;
  for (const auto& c : st["checkpoints"]) steps.push_back(c["step"].get<int64_t>());
  std::vector<int64_t> expected;
  for (int64_t s = 4; s <= kSteps; s += 4) expected.push_back(s);
  EXPECT_EQ(steps, expected) << "no checkpoint lost";
}

TEST_F(FaultTolerance, SigtermOfTheCoordinatorExitsZeroAndLosesNothing) {
  const std::string id = Submit(Spec("coordinator-term"));
  ASSERT_TRUE(WaitStep(id, 8));
  ::kill(coordinator_, SIGTERM);
  int status = 0;
  ::waitpid(coordinator_, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  StartCoordinator();
  const nlohmann::json st = WaitEnded(id);
  ASSERT_EQ(st["state"], "SUCCEEDED") << Events(st);
  EXPECT_EQ(st["restarts"], 0) << Events(st);
  EXPECT_EQ(AdapterSha(id), reference_sha_);
  ExpectEachStepOnce(id);
}

TEST_F(FaultTolerance, DrainCheckpointsAndMovesTheJobAndUndrainTakesWorkAgain) {
  // Paced (see the preemption test) until the drain has moved the job.
  ASSERT_TRUE(WriteFileAtomic(pace_file_, "150\n").ok());
  const std::string id = Submit(Spec("drain"));
  ASSERT_TRUE(WaitStep(id, 10));
  const std::string drained = Status(id)["workers"][0];
  ShellResult d = Cli("workers drain " + drained + " --wait --json");
  fs::remove(pace_file_);
  ASSERT_EQ(d.code, 0) << d.output;
  EXPECT_EQ(nlohmann::json::parse(d.output)["free_devices"], 1) << "--wait returns once it runs nothing";
  const nlohmann::json st = WaitEnded(id);
  ASSERT_EQ(st["state"], "SUCCEEDED") << Events(st);
  EXPECT_NE(Events(st).find("PENDING: worker " + drained + " is draining at step"), std::string::npos) << Events(st);
  EXPECT_NE(Events(st).find("; resuming from checkpoint step"), std::string::npos) << Events(st);
  EXPECT_EQ(st["restarts"], 0) << "a drain is not a failure";
  EXPECT_EQ(AdapterSha(id), reference_sha_);
  ExpectEachStepOnce(id);
  ASSERT_EQ(Cli("workers undrain " + drained).code, 0);
  bool undrained = false;
  for (const auto& w : nlohmann::json::parse(Cli("workers --json").output))
    if (w["id"] == drained) undrained = !w["draining"].get<bool>();
  EXPECT_TRUE(undrained);
}

TEST_F(FaultTolerance, SigtermOfAWorkerDaemonCheckpointsItsRanksExitsZeroAndTheJobMovesOn) {
  const std::string id = Submit(Spec("worker-term"));
  ASSERT_TRUE(WaitStep(id, 10));
  const std::string leaving = Status(id)["workers"][1];
  const pid_t pid = workers_[WorkerIndex(leaving)];
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const nlohmann::json st = WaitEnded(id);
  ASSERT_EQ(st["state"], "SUCCEEDED") << Events(st);
  EXPECT_NE(Events(st).find("stopped on request (SIGTERM)"), std::string::npos) << Events(st);
  EXPECT_EQ(st["restarts"], 0) << "a worker leaving cleanly is not a failure";
  EXPECT_EQ(AdapterSha(id), reference_sha_);
  ExpectEachStepOnce(id);
  StartWorker(WorkerIndex(leaving));  // a new incarnation starts undrained
  ASSERT_TRUE(WaitForWorkers(3));
}

TEST_F(FaultTolerance, HigherPriorityJobPreemptsAPreemptibleOneAndBothSucceed) {
  // Steps paced at 150 ms until the preemption shows: the tiny job's remaining 30 steps had once
  // finished before the coordinator preempted it (a race with the trainer's speed, seen in CI).
  ASSERT_TRUE(WriteFileAtomic(pace_file_, "150\n").ok());
  const std::string low = Submit(Spec("low", ", preemptible: true"), 0);
  ASSERT_TRUE(WaitStep(low, 10));
  const std::string high = Submit(Spec("high"), 5);  // needs 2 devices; only 1 is free
  for (int i = 0; i < 600 && Events(Status(low)).find("PENDING: preempted by") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  fs::remove(pace_file_);
  const nlohmann::json hs = WaitEnded(high);
  ASSERT_EQ(hs["state"], "SUCCEEDED") << Events(hs);
  const nlohmann::json ls = WaitEnded(low);
  ASSERT_EQ(ls["state"], "SUCCEEDED") << Events(ls);
  EXPECT_NE(Events(ls).find("PENDING: preempted by " + high + " (priority 5 over 0) at step"), std::string::npos)
      << Events(ls);
  EXPECT_EQ(ls["restarts"], 0);
  EXPECT_EQ(AdapterSha(low), reference_sha_) << "the preempted job's adapter is its uninterrupted one";
  EXPECT_EQ(AdapterSha(high), reference_sha_);
  ExpectEachStepOnce(low);
}

TEST_F(FaultTolerance, ACrashLoopFailsAfterMaxRestartsAndBadInputFailsOnce) {
  ASSERT_TRUE(WriteFileAtomic(crash_file_, "0 2\n").ok());  // rank 0 of every run dies before step 3
  const std::string id = Submit(Spec("crashy", ", max_restarts: 2"));
  const nlohmann::json st = WaitEnded(id);
  fs::remove(crash_file_);
  ASSERT_EQ(st["state"], "FAILED") << Events(st);
  EXPECT_EQ(st["restarts"], 2);
  const std::string events = Events(st);
  // Rank 0 dies; whichever report comes first (its signal, or rank 1 losing its peer) is the
  // attempt's reason.
  EXPECT_NE(events.find("restart 1 of 2: rank "), std::string::npos) << events;
  EXPECT_NE(events.find("restart 2 of 2: rank "), std::string::npos) << events;
  EXPECT_NE(st["reason"].get<std::string>().find("no restarts left (resources.max_restarts: 2"), std::string::npos)
      << st["reason"];
  // A model that is not there fails the job at once.
  const std::string spec = Spec("bad-input");
  std::ifstream in(spec);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find(dir_ + "/model"), (dir_ + "/model").size(), dir_ + "/no-such-model");
  std::ofstream(spec) << text;
  const std::string bad = Submit(spec);
  const nlohmann::json bs = WaitEnded(bad);
  EXPECT_EQ(bs["state"], "FAILED");
  EXPECT_EQ(bs["restarts"], 0);
  EXPECT_NE(bs["reason"].get<std::string>().find("(bad input: not restarted)"), std::string::npos) << bs["reason"];
}

}  // namespace
}  // namespace polytune
