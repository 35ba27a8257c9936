// polytune-worker: registers with the coordinator, heartbeats, runs each assigned rank as a
// child `polytune train` process (a crash in training never takes the daemon down), streams
// rank 0's metrics and uploads its checkpoints in verified chunks (ResultUploader, off the
// heartbeat loop).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "polytune/v1/polytune.grpc.pb.h"
#include "result_uploader.h"

namespace polytune::worker {

struct DaemonOptions {
  std::string coordinator;  // HOST:PORT
  std::string work_dir;
  std::string devices = "auto";  // auto | cpu:N | cuda:0,1
  std::string name;
  std::string address;                    // host other ranks reach this worker at
  std::string polytune_bin;               // the `polytune` binary that runs ranks
  int32_t rendezvous_port_first = 29600;  // ports kept for rank 0 stores placed here
  int32_t rendezvous_port_count = 100;
};

class WorkerDaemon {
 public:
  explicit WorkerDaemon(DaemonOptions options);
  // Runs until *stop becomes true; returns an error only for unusable options.
  absl::Status Run(const volatile bool* stop);

 private:
  struct Rank {
    std::string job_id;
    int32_t rank = 0;
    int32_t attempt = 0;     // the job's placement this rank belongs to
    bool port_busy = false;  // rank 0 found its rendezvous port taken and did not start
    pid_t pid = -1;
    std::string dir;  // output_dir of the rank
    bool exited = false;
    int32_t exit_code = 0;
    std::string message;
    // The process has exited but its last output (rank 0: results) is still being uploaded:
    // reported as running until then, so the job succeeds only with its final checkpoint.
    bool awaiting_upload = false;
    bool cancelled = false;
    std::chrono::steady_clock::time_point kill_at;  // cancelled: SIGKILL if still alive then
    int exit_reports = 0;                           // heartbeats that carried the exit; forgotten after a few
  };

  absl::Status Register();
  absl::Status StartRank(const v1::RankAssignment& a);
  void PollRanks();                         // reaps exited ranks, escalates cancels, notes finished uploads
  void StopJob(const std::string& job_id);  // SIGTERM now, SIGKILL after 5 s (from PollRanks)
  void StopJobAndWait(const std::string& job_id);
  absl::StatusOr<std::string> FetchArtifact(const std::string& sha);

  DaemonOptions o_;
  std::string incarnation_;
  std::vector<v1::DeviceInfo> devices_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::unique_ptr<ResultUploader> uploader_;
  std::map<std::string, Rank> ranks_;  // key job/rank
};

}  // namespace polytune::worker
