// gRPC services of the coordinator. They translate between proto and domain types and
// delegate to JobManager, Store and ArtifactStore; no policy lives here.
#pragma once

#include <memory>

#include "polytune/coordinator/artifact_store.h"
#include "polytune/coordinator/coordinator_metrics.h"
#include "polytune/coordinator/job_manager.h"
#include "polytune/coordinator/store.h"
#include "polytune/v1/polytune.grpc.pb.h"

namespace polytune::coordinator {

// The largest dataset or checkpoint accepted in one upload; bigger ones are refused before
// they are buffered whole.
constexpr int64_t kMaxArtifactBytes = int64_t{4} << 30;

class JobServiceImpl final : public v1::JobService::Service {
 public:
  JobServiceImpl(JobManager* jobs, Store* store, ArtifactStore* artifacts)
      : jobs_(jobs), store_(store), artifacts_(artifacts) {}
  grpc::Status SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest*, v1::SubmitJobResponse*) override;
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest*, v1::GetJobResponse*) override;
  grpc::Status GetLogs(grpc::ServerContext*, const v1::GetLogsRequest*, v1::GetLogsResponse*) override;
  grpc::Status GetMetrics(grpc::ServerContext*, const v1::GetMetricsRequest*, v1::GetMetricsResponse*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*, v1::ListJobsResponse*) override;
  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest*, v1::CancelJobResponse*) override;
  grpc::Status UploadArtifact(grpc::ServerContext*, grpc::ServerReader<v1::UploadArtifactChunk>*,
                              v1::UploadArtifactResponse*) override;
  grpc::Status Download(grpc::ServerContext*, const v1::DownloadRequest*,
                        grpc::ServerWriter<v1::DownloadChunk>*) override;
  grpc::Status ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*, v1::ListWorkersResponse*) override;
  grpc::Status DrainWorker(grpc::ServerContext*, const v1::DrainWorkerRequest*, v1::DrainWorkerResponse*) override;
  grpc::Status UndrainWorker(grpc::ServerContext*, const v1::UndrainWorkerRequest*,
                             v1::UndrainWorkerResponse*) override;

 private:
  v1::WorkerInfo Info(const Worker& w) const;
  JobManager* jobs_;
  Store* store_;
  ArtifactStore* artifacts_;
};

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // `metrics` may be null (no metrics endpoint).
  WorkerServiceImpl(JobManager* jobs, Store* store, ArtifactStore* artifacts, int64_t heartbeat_interval_ms = 1000,
                    CoordinatorMetrics* metrics = nullptr)
      : jobs_(jobs),
        store_(store),
        artifacts_(artifacts),
        heartbeat_interval_ms_(heartbeat_interval_ms),
        metrics_(metrics) {}
  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest*, v1::RegisterResponse*) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*, v1::HeartbeatResponse*) override;
  grpc::Status ReportMetrics(grpc::ServerContext*, const v1::ReportMetricsRequest*,
                             v1::ReportMetricsResponse*) override;
  grpc::Status ReportLogs(grpc::ServerContext*, const v1::ReportLogsRequest*, v1::ReportLogsResponse*) override;
  grpc::Status UploadCheckpoint(grpc::ServerContext*, grpc::ServerReader<v1::UploadCheckpointChunk>*,
                                v1::UploadCheckpointResponse*) override;
  grpc::Status Download(grpc::ServerContext*, const v1::DownloadRequest*,
                        grpc::ServerWriter<v1::DownloadChunk>*) override;

 private:
  JobManager* jobs_;
  Store* store_;
  ArtifactStore* artifacts_;
  int64_t heartbeat_interval_ms_;  // what workers are told to use
  CoordinatorMetrics* metrics_;
};

}  // namespace polytune::coordinator
