#include "worker_metrics.h"

namespace polytune::worker {

WorkerTelemetry* WorkerTelemetry::Null() {
  static WorkerTelemetry none;
  return &none;
}

WorkerMetrics::WorkerMetrics(const std::vector<DeviceSlot>& devices)
    : registry_(std::make_shared<prometheus::Registry>()),
      ranks_(prometheus::BuildGauge()
                 .Name("polytune_worker_ranks")
                 .Help("Ranks on this worker by state (running, uploading: exited with results still being sent, "
                       "exited: not yet reported).")
                 .Register(*registry_)),
      exits_(prometheus::BuildCounter()
                 .Name("polytune_worker_rank_exits_total")
                 .Help("Ranks that ended on this worker, by outcome (succeeded, failed, cancelled).")
                 .Register(*registry_)),
      heartbeat_(prometheus::BuildHistogram()
                     .Name("polytune_worker_heartbeat_duration_seconds")
                     .Help("Round trip of one heartbeat to the coordinator.")
                     .Register(*registry_)
                     .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                                      0.1, 0.25, 0.5, 1, 2.5, 5})),
      cache_bytes_(prometheus::BuildGauge()
                       .Name("polytune_worker_dataset_cache_bytes")
                       .Help("Bytes of datasets cached on this worker.")
                       .Register(*registry_)
                       .Add({})),
      upload_queue_(prometheus::BuildGauge()
                        .Name("polytune_worker_upload_queue_bytes")
                        .Help("Bytes of rank output and checkpoints waiting to be sent to the coordinator.")
                        .Register(*registry_)
                        .Add({})),
      gpu_memory_(prometheus::BuildGauge()
                      .Name("polytune_worker_gpu_memory_used_bytes")
                      .Help("GPU memory in use per CUDA device (nvidia-smi), CUDA workers only.")
                      .Register(*registry_)) {
  auto& by_kind = prometheus::BuildGauge()
                      .Name("polytune_worker_devices")
                      .Help("Devices this worker offers, by kind.")
                      .Register(*registry_);
  for (const char* kind : {"cpu", "cuda"}) by_kind.Add({{"kind", kind}}).Set(0);
  for (const auto& d : devices) by_kind.Add({{"kind", d.kind}}).Increment();
  for (const char* s : {"running", "uploading", "exited"}) ranks_.Add({{"state", s}}).Set(0);
  for (const char* o : {"succeeded", "failed", "cancelled"}) exits_.Add({{"outcome", o}});
}

void WorkerMetrics::SetRanks(int64_t running, int64_t uploading, int64_t exited) {
  ranks_.Add({{"state", "running"}}).Set(static_cast<double>(running));
  ranks_.Add({{"state", "uploading"}}).Set(static_cast<double>(uploading));
  ranks_.Add({{"state", "exited"}}).Set(static_cast<double>(exited));
}

void WorkerMetrics::OnRankExit(const std::string& outcome) { exits_.Add({{"outcome", outcome}}).Increment(); }
void WorkerMetrics::OnHeartbeat(double seconds) { heartbeat_.Observe(seconds); }
void WorkerMetrics::SetDatasetCacheBytes(int64_t bytes) { cache_bytes_.Set(static_cast<double>(bytes)); }
void WorkerMetrics::SetUploadQueueBytes(int64_t bytes) { upload_queue_.Set(static_cast<double>(bytes)); }

void WorkerMetrics::SetGpuMemoryUsed(const std::map<int, int64_t>& bytes_by_device) {
  for (const auto& [device, bytes] : bytes_by_device)
    gpu_memory_.Add({{"device", std::to_string(device)}}).Set(static_cast<double>(bytes));
}

}  // namespace polytune::worker
