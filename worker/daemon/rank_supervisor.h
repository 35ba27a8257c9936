// Runs the ranks assigned to this worker as child `polytune train` processes (a crash in
// training never takes the daemon down) and keeps their state for heartbeats.
//
// Contracts:
// - A rank's spec is parsed with the one job-spec parser; its artifacts are fetched and
//   verified, its output_dir set, and the canonical YAML written for the rank to read.
// - Cancel sends SIGTERM to the rank's process group and SIGKILL once `cancel_grace_micros`
//   has passed on the injected clock (checked by Poll); nothing more of it is forwarded.
// - Preempt sends SIGTERM too, but the rank finishes its step, checkpoints and exits with
//   kExitPreempted; its results (that checkpoint) are forwarded before the exit is reported.
//   SIGKILL follows only after `preempt_grace_micros`.
// - A new placement starts in an empty rank folder; one that resumes gets the coordinator's
//   checkpoint archive, verified against its sha256 and unpacked, and `--resume` to it.
// - An exited rank is reported (with its last error line when it failed) until a heartbeat
//   carrying it succeeds (Acknowledge), then forgotten: the coordinator hears of it once.
// - Rank 0's exit is held back until its final metrics and checkpoint are forwarded, so a
//   job only succeeds with its final checkpoint recorded.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/common/clock.h"
#include "process_launcher.h"
#include "result_forwarder.h"
#include "worker_telemetry.h"
#include "worker_types.h"

namespace polytune::worker {

struct SupervisorOptions {
  std::string worker_name;
  std::string address;       // this host, as other ranks reach it
  std::string work_dir;      // absolute: ranks' folders and the artifact cache
  std::string polytune_bin;  // the `polytune` binary that runs ranks
  int64_t cancel_grace_micros = 5'000'000;
  int64_t preempt_grace_micros = 120'000'000;
  int collective_timeout_seconds = 60;
  // When set, a job's model.path must resolve (symlinks followed) to a folder under one of
  // these; anything else is refused as bad input, naming the path.
  std::vector<std::string> model_roots;
};

// What the supervisor needs from outside, injected so tests control it.
struct SupervisorDeps {
  const Clock* clock = nullptr;
  ProcessLauncher* launcher = nullptr;
  ResultForwarder* forwarder = nullptr;
  // The verified bytes of an artifact (the coordinator's Download).
  std::function<absl::StatusOr<std::string>(const std::string& sha256)> download;
  // Whether a rendezvous port can be bound on this host now.
  std::function<bool(int port)> port_is_free;
  WorkerTelemetry* telemetry = WorkerTelemetry::Null();
};

class RankSupervisor {
 public:
  RankSupervisor(SupervisorOptions options, SupervisorDeps deps);

  // Starts a rank (a repeated assignment of the same attempt is ignored). A rank that cannot
  // start (bad spec, dataset unavailable, model missing, port taken) is recorded as exited
  // with the reason, so the coordinator learns it from the next heartbeat.
  void Start(const RankAssignment& assignment);
  void Cancel(const std::string& job_id);  // SIGTERM now; SIGKILL after the grace period
  void CancelAll();
  // Checkpoint and stop (repeats are ignored).
  void Preempt(const std::string& job_id);
  void PreemptAll();
  // Reaps exited ranks, escalates cancels past their grace period, notes finished uploads.
  void Poll();
  // Every rank's current state, for the next heartbeat.
  std::vector<RankReport> Reports() const;
  // The heartbeat carrying `reports` succeeded: exited ranks in it are forgotten.
  void Acknowledge(const std::vector<RankReport>& reports);
  bool HasLiveProcesses() const;
  // Whether exited ranks wait for a heartbeat to carry their exit.
  bool HasUnreportedExits() const;
  struct Counts {
    int64_t running = 0, uploading = 0, exited = 0;
  };
  Counts CountRanks() const;

 private:
  struct Rank {
    RankAssignment assignment;
    pid_t pid = -1;
    std::string dir;  // the rank's folder
    bool exited = false;
    int32_t exit_code = 0;
    std::string message;
    bool port_busy = false;
    bool awaiting_upload = false;  // exited; its last results are being forwarded
    bool cancelled = false;
    bool preempting = false;
    int64_t kill_at_micros = INT64_MAX;  // steady time of SIGKILL when cancelled or preempted
  };
  static std::string Key(const std::string& job_id, int32_t rank);
  // Prepares the rank's folder and spec; an error is the reason the rank cannot start.
  absl::StatusOr<std::string> PrepareSpec(const RankAssignment& a, const std::string& dir);
  // Fetches the assignment's resume checkpoint into `dir`/resume and returns that folder.
  absl::StatusOr<std::string> PrepareResume(const RankAssignment& a, const std::string& dir);
  // The artifact's verified local copy, cache/<sha256>/<name> (its uploaded file name, so
  // errors about its lines name the user's file).
  absl::StatusOr<std::string> FetchArtifact(const std::string& sha256, const std::string& name);
  void Exit(Rank& r, int32_t code, std::string message);
  void KillAndReap(Rank& r);

  SupervisorOptions o_;
  SupervisorDeps d_;
  std::map<std::string, Rank> ranks_;  // by Key()
};

// The last line of a rank's log that mentions an error (empty if none).
std::string LastErrorLine(const std::string& log_text);

}  // namespace polytune::worker
