// The worker daemon's Prometheus metrics (docs/metrics.md).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "worker_telemetry.h"
#include "worker_types.h"

namespace polytune::worker {

class WorkerMetrics : public WorkerTelemetry {
 public:
  explicit WorkerMetrics(const std::vector<DeviceSlot>& devices);
  std::shared_ptr<prometheus::Registry> registry() { return registry_; }

  void SetRanks(int64_t running, int64_t uploading, int64_t exited) override;
  void OnRankExit(const std::string& outcome) override;
  void OnHeartbeat(double seconds) override;
  void SetDatasetCacheBytes(int64_t bytes) override;
  void SetUploadQueueBytes(int64_t bytes) override;
  void SetGpuMemoryUsed(const std::map<int, int64_t>& bytes_by_device) override;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& ranks_;
  prometheus::Family<prometheus::Counter>& exits_;
  prometheus::Histogram& heartbeat_;
  prometheus::Gauge& cache_bytes_;
  prometheus::Gauge& upload_queue_;
  prometheus::Family<prometheus::Gauge>& gpu_memory_;
};

}  // namespace polytune::worker
