// Streams a rank 0's results to the coordinator from its own thread, so slow uploads never
// hold up heartbeats: new metrics.jsonl lines (complete ones only) and each committed
// checkpoint folder, bundled and sent in chunks of at most 1 MiB with its sha256.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "polytune/v1/polytune.grpc.pb.h"

namespace polytune::worker {

class ResultUploader {
 public:
  explicit ResultUploader(v1::WorkerService::Stub* stub);
  ~ResultUploader();  // stops the thread (an upload in flight is abandoned)

  // Starts following `out_dir` (the rank's output_dir) for `job_id`, under `key`.
  void Track(const std::string& key, const std::string& job_id, const std::string& out_dir);
  // The rank has exited: one last pass picks up its final metrics and checkpoint.
  void Finish(const std::string& key);
  // Whether the last pass after Finish() is done (true for keys not tracked).
  bool Finished(const std::string& key) const;
  // Stops following `key` (a cancelled rank): nothing more is sent.
  void Forget(const std::string& key);

 private:
  struct Target {
    std::string job_id, out_dir;
    size_t metrics_sent = 0;          // lines of metrics.jsonl already reported
    std::set<std::string> uploaded;   // checkpoint folders already uploaded
    bool finish_requested = false, finished = false;
  };

  void Loop();
  void SyncOnce(Target& t);  // runs without the lock; only the loop touches progress fields

  v1::WorkerService::Stub* stub_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, Target> targets_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace polytune::worker
