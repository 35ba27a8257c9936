// gRPC services of the coordinator. They translate between proto and domain types and
// delegate to JobManager, Store and ArtifactStore; no policy lives here.
#pragma once

#include <memory>

#include "polytune/coordinator/artifact_store.h"
#include "polytune/coordinator/coordinator_metrics.h"
#include "polytune/coordinator/grpc_auth.h"
#include "polytune/coordinator/job_manager.h"
#include "polytune/coordinator/store.h"
#include "polytune/v1/polytune.grpc.pb.h"

namespace polytune::coordinator {

// The largest job spec accepted, in bytes of YAML (real specs are a few KB).
constexpr size_t kMaxSpecBytes = 256 << 10;
constexpr size_t kMaxJobNameBytes = 256;
// The most records or log lines one report may carry (workers send batches of at most this).
constexpr int kMaxRecordsPerReport = 2000;
constexpr int kMaxRanksPerReport = 1024;

class JobServiceImpl final : public v1::JobService::Service {
 public:
  // `auth` null: authentication off (every caller an anonymous admin).
  JobServiceImpl(JobManager* jobs, Store* store, ArtifactStore* artifacts, const Authorizer* auth = nullptr)
      : jobs_(jobs), store_(store), artifacts_(artifacts), auth_(auth ? auth : &kNoAuth) {}
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
  // The caller may act on the job (NOT_FOUND, or PERMISSION_DENIED for another user's job).
  absl::StatusOr<Job> OwnJob(const Principal& who, const std::string& id) const;
  // A user reads only artifacts it uploaded and checkpoints of its own jobs.
  absl::Status MayRead(const Principal& who, const std::string& sha256) const;
  static inline const Authorizer kNoAuth{};
  JobManager* jobs_;
  Store* store_;
  ArtifactStore* artifacts_;
  const Authorizer* auth_;
};

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // `metrics` may be null (no metrics endpoint).
  WorkerServiceImpl(JobManager* jobs, Store* store, ArtifactStore* artifacts, int64_t heartbeat_interval_ms = 1000,
                    CoordinatorMetrics* metrics = nullptr, const Authorizer* auth = nullptr)
      : jobs_(jobs),
        store_(store),
        artifacts_(artifacts),
        heartbeat_interval_ms_(heartbeat_interval_ms),
        metrics_(metrics),
        auth_(auth ? auth : &kNoAuth) {}
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
  // With authentication on, a worker principal acts only for workers it registered, and
  // reports only on jobs placed on them.
  absl::Status CheckWorker(const Principal& who, const std::string& worker_id, const std::string& incarnation) const;
  absl::Status CheckReporter(const Principal& who, const std::string& worker_id, const std::string& incarnation,
                             const std::string& job_id) const;
  static inline const Authorizer kNoAuth{};
  JobManager* jobs_;
  Store* store_;
  ArtifactStore* artifacts_;
  int64_t heartbeat_interval_ms_;  // what workers are told to use
  CoordinatorMetrics* metrics_;
  const Authorizer* auth_;
};

}  // namespace polytune::coordinator
