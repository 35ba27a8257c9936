// In-memory fakes of the worker daemon's outside world: processes, the coordinator, the
// result forwarder. No process is started and no time passes unless a test says so.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "coordinator_client.h"
#include "polytune/common/clock.h"
#include "process_launcher.h"
#include "rank_supervisor.h"
#include "result_forwarder.h"

namespace polytune::worker::testing {

class FakeLauncher : public ProcessLauncher {
 public:
  absl::StatusOr<pid_t> Spawn(const SpawnOptions& o) override {
    const pid_t pid = next_pid_++;
    spawned[pid] = o;
    return pid;
  }
  std::optional<ExitStatus> TryReap(pid_t pid) override {
    auto it = exits.find(pid);
    if (it == exits.end()) return std::nullopt;
    ExitStatus s = it->second;
    exits.erase(it);
    return s;
  }
  void Signal(pid_t pid, int sig) override {
    signals.push_back({pid, sig});
    if (sig == SIGKILL || (sig == SIGTERM && !ignore_sigterm)) exits[pid] = ExitStatus{true, 0, sig};
  }
  std::map<pid_t, SpawnOptions> spawned;
  std::map<pid_t, ExitStatus> exits;  // set by tests: the process has ended so
  std::vector<std::pair<pid_t, int>> signals;
  bool ignore_sigterm = false;

 private:
  pid_t next_pid_ = 1000;
};

class FakeForwarder : public ResultForwarder {
 public:
  void Track(const std::string& key, const std::string&, int32_t, int32_t, const std::string&, bool) override {
    tracked.insert(key);
  }
  void Finish(const std::string& key) override { finished.insert(key); }
  bool Finished(const std::string& key) const override { return finished.count(key) > 0; }
  void Forget(const std::string& key) override { tracked.erase(key); }
  std::set<std::string> tracked, finished;
};

class FakeCoordinator : public CoordinatorClient {
 public:
  explicit FakeCoordinator(const Clock* clock) : clock_(clock) {}
  absl::StatusOr<int64_t> Register(const Registration&, const std::vector<RankReport>& ranks) override {
    register_times.push_back(clock_->SteadyNowMicros());
    registered_ranks.push_back(ranks);
    if (register_failures > 0) {
      --register_failures;
      return absl::UnavailableError("coordinator down");
    }
    return interval_micros;
  }
  absl::StatusOr<Orders> Heartbeat(const std::string&, const std::string&, const std::vector<RankReport>& ranks,
                                   bool shutting_down) override {
    heartbeat_times.push_back(clock_->SteadyNowMicros());
    shutting_down_flags.push_back(shutting_down);
    heartbeats.push_back(ranks);
    if (heartbeat_status.size() > 0) {
      absl::Status st = heartbeat_status.front();
      heartbeat_status.erase(heartbeat_status.begin());
      if (!st.ok()) return st;
    }
    Orders o = next_orders;
    next_orders = {};
    return o;
  }
  absl::StatusOr<std::string> Download(const std::string& sha) override {
    auto it = artifacts.find(sha);
    if (it == artifacts.end()) return absl::NotFoundError("no artifact " + sha);
    return it->second;
  }
  // Called from the result uploader's thread.
  absl::Status ReportLogs(const std::string&, int32_t, const std::vector<std::string>& lines) override {
    log_lines += static_cast<int>(lines.size());
    return absl::OkStatus();
  }
  absl::Status ReportMetrics(const std::string&, int32_t, const std::vector<MetricsRecord>& records) override {
    metrics_records += static_cast<int>(records.size());
    if (static_cast<int>(records.size()) > largest_metrics_batch)
      largest_metrics_batch = static_cast<int>(records.size());
    return absl::OkStatus();
  }
  absl::Status UploadCheckpoint(const std::string&, int32_t, int64_t, const std::string&) override {
    ++upload_attempts;
    if (upload_failures > 0) {
      --upload_failures;
      return absl::UnavailableError("artifact folder not writable");
    }
    ++uploads;
    return absl::OkStatus();
  }
  std::atomic<int> log_lines{0}, metrics_records{0}, largest_metrics_batch{0}, upload_attempts{0}, upload_failures{0},
      uploads{0};

  int64_t interval_micros = 250'000;
  int register_failures = 0;
  std::vector<absl::Status> heartbeat_status;  // consumed in order; OK when empty
  Orders next_orders;
  std::map<std::string, std::string> artifacts;
  std::vector<int64_t> register_times, heartbeat_times;
  std::vector<std::vector<RankReport>> heartbeats;
  std::vector<std::vector<RankReport>> registered_ranks;
  std::vector<bool> shutting_down_flags;

 private:
  const Clock* clock_;
};

// A work dir and a model folder on disk (the supervisor checks the model exists).
class TempDirs {
 public:
  TempDirs() {
    char t[] = "/tmp/polytune-worker-test-XXXXXX";
    root = ::mkdtemp(t);
    std::filesystem::create_directories(root + "/model");
    std::ofstream(root + "/model/config.json") << "{}";
  }
  ~TempDirs() { std::filesystem::remove_all(root); }
  std::string root;
};

// A supervisor wired to the fakes, with a 5 s cancel grace period.
inline std::unique_ptr<RankSupervisor> MakeTestSupervisor(const Clock* clock, FakeLauncher* launcher,
                                                          FakeForwarder* forwarder, FakeCoordinator* coordinator,
                                                          const std::string& work_dir,
                                                          std::function<bool(int)> port_is_free) {
  SupervisorOptions o;
  o.worker_name = "w1";
  o.address = "127.0.0.1";
  o.work_dir = work_dir;
  o.polytune_bin = "/usr/bin/polytune";
  o.cancel_grace_micros = 5'000'000;
  SupervisorDeps d;
  d.clock = clock;
  d.launcher = launcher;
  d.forwarder = forwarder;
  d.download = [coordinator](const std::string& sha) { return coordinator->Download(sha); };
  d.port_is_free = std::move(port_is_free);
  return std::make_unique<RankSupervisor>(o, d);
}

inline std::string SpecFor(const std::string& model, const std::string& train) {
  return "model: {path: " + model + "}\ndata: {train: " + train + "}\nresources: {world_size: 2}\n";
}

}  // namespace polytune::worker::testing
