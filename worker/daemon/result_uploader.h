// Streams ranks' output to the coordinator from its own thread, so slow uploads never hold up
// heartbeats: every rank's new rank.log lines, and for rank 0 its new metrics.jsonl records
// and each committed checkpoint folder, bundled and sent in chunks of at most 1 MiB with its
// sha256. Only complete lines are sent.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "coordinator_client.h"
#include "result_forwarder.h"
#include "worker_telemetry.h"

namespace polytune::worker {

class ResultUploader final : public ResultForwarder {
 public:
  explicit ResultUploader(CoordinatorClient* client, WorkerTelemetry* telemetry = WorkerTelemetry::Null());
  ~ResultUploader();  // stops the thread (an upload in flight is abandoned)

  // Starts following the rank folder `rank_dir` (rank.log, and out/ when `results`) of
  // `job_id`'s rank `rank`, under `key`.
  void Track(const std::string& key, const std::string& job_id, int32_t rank, int32_t attempt,
             const std::string& rank_dir, bool results) override;
  // The rank has exited: one last pass picks up its final metrics and checkpoint.
  void Finish(const std::string& key) override;
  // Whether the last pass after Finish() is done (true for keys not tracked).
  bool Finished(const std::string& key) const override;
  // Stops following `key` (a cancelled rank): nothing more is sent.
  void Forget(const std::string& key) override;

 private:
  struct Target {
    std::string job_id;
    int32_t rank = 0;
    int32_t attempt = 0;
    std::string rank_dir;
    bool results = false;            // rank 0: metrics and checkpoints too
    size_t log_sent = 0;             // bytes of rank.log already reported
    size_t metrics_sent = 0;         // lines of metrics.jsonl already reported
    std::set<std::string> uploaded;  // checkpoint folders already uploaded
    bool finish_requested = false, finished = false;
    // Failed sends back off (0.3 s doubling to 30 s) instead of hammering the coordinator.
    int failures = 0;
    std::chrono::steady_clock::time_point next_try{};
  };

  void Loop();
  // One pass over a target, without the lock (only the loop touches progress fields): a send
  // failed, or all went through but more is left (bounded batches), or everything it holds is
  // delivered. `final`: the rank has exited, so a last line without a newline is sent as is.
  enum class Pass { kFailed, kMoreToSend, kDelivered };
  Pass SyncOnce(Target& t, bool final);
  bool SendLogLines(Target& t, bool final);
  bool SendMetrics(Target& t);
  bool SendCheckpoints(Target& t);
  void PruneDeliveredCheckpoints(const Target& t);
  static int64_t Backlog(const Target& t);  // bytes not yet sent

  CoordinatorClient* client_;
  WorkerTelemetry* telemetry_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, Target> targets_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace polytune::worker
