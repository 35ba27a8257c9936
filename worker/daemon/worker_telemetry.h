// What the worker daemon reports about itself, behind an interface so its domain classes stay
// free of Prometheus (WorkerMetrics implements it; the default does nothing). Thread-safe:
// the result uploader reports from its own thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace polytune::worker {

class WorkerTelemetry {
 public:
  virtual ~WorkerTelemetry() = default;
  virtual void SetRanks(int64_t running, int64_t uploading, int64_t exited) {}
  virtual void OnRankExit(const std::string& outcome) {}  // succeeded, failed, cancelled
  virtual void OnHeartbeat(double seconds) {}
  virtual void SetDatasetCacheBytes(int64_t bytes) {}
  virtual void SetUploadQueueBytes(int64_t bytes) {}
  virtual void SetGpuMemoryUsed(const std::map<int, int64_t>& bytes_by_device) {}

  static WorkerTelemetry* Null();
};

}  // namespace polytune::worker
