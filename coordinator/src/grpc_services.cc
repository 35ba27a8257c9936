#include "polytune/coordinator/grpc_services.h"

#include "absl/strings/str_cat.h"
#include "polytune/coordinator/proto_convert.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/metrics_convert.h"
#include "polytune/rpc/status.h"
#include "polytune/rpc/transfer.h"
#include "polytune/spec/job_spec.h"

namespace polytune::coordinator {
namespace {

using rpc::ToGrpc;

grpc::Status StreamArtifact(ArtifactStore* artifacts, const std::string& sha,
                            grpc::ServerWriter<v1::DownloadChunk>* w) {
  auto data = artifacts->Get(sha);
  if (!data.ok()) return ToGrpc(data.status());
  return rpc::StreamChunks(w, *data);
}

}  // namespace

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* req,
                                       v1::SubmitJobResponse* resp) {
  // The same parser and rules as the CLI; paths must be absolute here (no base folder).
  auto spec = spec::ParseJobSpec(req->spec_yaml(), "submitted spec", "", spec::SpecUse::kSubmission);
  if (!spec.ok()) return ToGrpc(spec.status());
  for (const auto& [key, d] :
       {std::make_pair("data.train", &spec->data.train), std::make_pair("data.eval", &spec->data.eval)})
    if (d->is_artifact() && !artifacts_->Has(d->sha256()))
      return ToGrpc(absl::FailedPreconditionError(absl::StrCat(
          "submitted spec: '", key, "' names artifact ", d->sha256(), ", which was never uploaded; upload it first")));
  auto job = jobs_->Submit(req->name(), req->priority(), spec->resources->world_size, spec::ToCanonicalYaml(*spec),
                           spec->model.path, {spec->resources->max_restarts, spec->resources->preemptible});
  if (!job.ok()) return ToGrpc(job.status());
  *resp->mutable_job() = ToProto(*job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext*, const v1::GetJobRequest* req, v1::GetJobResponse* resp) {
  auto job = jobs_->Get(req->id());
  if (!job.ok()) return ToGrpc(job.status());
  *resp->mutable_job() = ToProto(*job);
  auto cks = store_->Checkpoints(req->id());
  if (!cks.ok()) return ToGrpc(cks.status());
  for (const auto& c : *cks) *resp->add_checkpoints() = ToProto(c);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetMetrics(grpc::ServerContext*, const v1::GetMetricsRequest* req,
                                        v1::GetMetricsResponse* resp) {
  auto job = jobs_->Get(req->id());
  if (!job.ok()) return ToGrpc(job.status());
  auto records = store_->Metrics(req->id(), req->after_seq(), rpc::kMaxMetricsPerReply);
  if (!records.ok()) return ToGrpc(records.status());
  for (const auto& r : *records) {
    v1::MetricsRecord* p = resp->add_records();
    *p = rpc::ToProto(r.record);
    p->set_seq(r.seq);
    p->set_attempt(r.attempt);
  }
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetLogs(grpc::ServerContext*, const v1::GetLogsRequest* req, v1::GetLogsResponse* resp) {
  auto job = jobs_->Get(req->id());
  if (!job.ok()) return ToGrpc(job.status());
  auto lines = store_->Logs(req->id(), req->after_seq(), rpc::kMaxLogLinesPerReply);
  if (!lines.ok()) return ToGrpc(lines.status());
  for (const auto& l : *lines) *resp->add_lines() = ToProto(l);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*, v1::ListJobsResponse* resp) {
  for (const auto& j : jobs_->List()) *resp->add_jobs() = ToProto(j);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext*, const v1::CancelJobRequest* req,
                                       v1::CancelJobResponse* resp) {
  auto job = jobs_->Cancel(req->id());
  if (!job.ok()) return ToGrpc(job.status());
  *resp->mutable_job() = ToProto(*job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::UploadArtifact(grpc::ServerContext*, grpc::ServerReader<v1::UploadArtifactChunk>* reader,
                                            v1::UploadArtifactResponse* resp) {
  std::string sha;
  auto data = rpc::ReadChunked<v1::UploadArtifactChunk>(reader, kMaxArtifactBytes,
                                                        [&](const v1::UploadArtifactChunk& c) { sha = c.sha256(); });
  if (!data.ok()) return ToGrpc(data.status());
  absl::Status st = artifacts_->Put(*data, sha);
  if (!st.ok()) return ToGrpc(st);
  resp->set_sha256(sha);
  resp->set_size_bytes(static_cast<int64_t>(data->size()));
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::Download(grpc::ServerContext*, const v1::DownloadRequest* req,
                                      grpc::ServerWriter<v1::DownloadChunk>* w) {
  return StreamArtifact(artifacts_, req->sha256(), w);
}

grpc::Status JobServiceImpl::ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                                         v1::ListWorkersResponse* resp) {
  for (const auto& w : jobs_->Workers()) *resp->add_workers() = Info(w);
  return grpc::Status::OK;
}

v1::WorkerInfo JobServiceImpl::Info(const Worker& w) const {
  auto free = jobs_->FreeDevices();
  v1::WorkerInfo p;
  p.set_id(w.id);
  p.set_address(w.address);
  p.set_devices(w.slots());
  p.set_free_devices(w.alive ? free[w.id] : 0);
  p.set_alive(w.alive);
  p.set_last_heartbeat_unix_micros(w.last_heartbeat_micros);
  p.set_draining(w.draining);
  return p;
}

grpc::Status JobServiceImpl::DrainWorker(grpc::ServerContext*, const v1::DrainWorkerRequest* req,
                                         v1::DrainWorkerResponse* resp) {
  auto w = jobs_->Drain(req->id(), req->let_finish());
  if (!w.ok()) return ToGrpc(w.status());
  *resp->mutable_worker() = Info(*w);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::UndrainWorker(grpc::ServerContext*, const v1::UndrainWorkerRequest* req,
                                           v1::UndrainWorkerResponse* resp) {
  auto w = jobs_->Undrain(req->id());
  if (!w.ok()) return ToGrpc(w.status());
  *resp->mutable_worker() = Info(*w);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext*, const v1::RegisterRequest* req,
                                         v1::RegisterResponse* resp) {
  auto worker = FromProto(*req);
  if (!worker.ok()) return ToGrpc(worker.status());
  std::vector<RankReport> ranks;
  for (const auto& r : req->ranks()) ranks.push_back(FromProto(r));
  absl::Status st = jobs_->RegisterWorker(*worker, ranks);
  if (!st.ok()) return ToGrpc(st);
  resp->set_heartbeat_interval_ms(heartbeat_interval_ms_);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                                          v1::HeartbeatResponse* resp) {
  std::vector<RankReport> ranks;
  for (const auto& r : req->ranks()) ranks.push_back(FromProto(r));
  auto reply = jobs_->Heartbeat(req->worker_id(), req->incarnation(), ranks, req->shutting_down());
  if (!reply.ok()) return ToGrpc(reply.status());
  for (const auto& a : reply->start) *resp->add_start() = ToProto(a);
  for (const auto& c : reply->cancel_jobs) resp->add_cancel_jobs(c);
  for (const auto& c : reply->preempt_jobs) resp->add_preempt_jobs(c);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportMetrics(grpc::ServerContext*, const v1::ReportMetricsRequest* req,
                                              v1::ReportMetricsResponse*) {
  auto job = jobs_->Get(req->job_id());
  if (!job.ok()) return ToGrpc(job.status());
  std::vector<MetricsRecord> records;
  for (const auto& p : req->records()) {
    auto r = rpc::FromProto(p);
    if (!r.ok()) return ToGrpc(r.status());
    records.push_back(*std::move(r));
  }
  // A superseded placement's records are dropped (acknowledged, so its worker stops sending):
  // the job's stream holds each step once, from the placement that counts.
  if (!jobs_->AcceptsResults(req->job_id(), req->attempt())) return grpc::Status::OK;
  absl::Status st = store_->AppendMetrics(req->job_id(), req->attempt(), records);
  if (st.ok() && !records.empty()) jobs_->NoteProgress(req->job_id(), records.back().step());
  if (st.ok() && metrics_) metrics_->OnMetricsRecords(req->job_id(), records);
  return ToGrpc(st);
}

grpc::Status WorkerServiceImpl::ReportLogs(grpc::ServerContext*, const v1::ReportLogsRequest* req,
                                           v1::ReportLogsResponse*) {
  auto job = jobs_->Get(req->job_id());
  if (!job.ok()) return ToGrpc(job.status());
  std::vector<std::string> lines;
  for (const auto& line : req->lines())  // one runaway line must not fill the database
    lines.push_back(line.size() > rpc::kMaxLogLineBytes ? line.substr(0, rpc::kMaxLogLineBytes) + " [truncated]"
                                                        : line);
  return ToGrpc(store_->AppendLogs(req->job_id(), req->rank(), lines));
}

grpc::Status WorkerServiceImpl::UploadCheckpoint(grpc::ServerContext*,
                                                 grpc::ServerReader<v1::UploadCheckpointChunk>* reader,
                                                 v1::UploadCheckpointResponse* resp) {
  std::string sha, job_id;
  int64_t step = -1;
  int32_t attempt = 0;
  auto data =
      rpc::ReadChunked<v1::UploadCheckpointChunk>(reader, kMaxArtifactBytes, [&](const v1::UploadCheckpointChunk& c) {
        job_id = c.job_id();
        step = c.step();
        sha = c.sha256();
        attempt = c.attempt();
      });
  if (!data.ok()) return ToGrpc(data.status());
  if (!jobs_->Get(job_id).ok()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "checkpoint for an unknown job");
  absl::Status st = artifacts_->Put(*data, sha);
  if (metrics_) metrics_->OnCheckpointUpload(st.ok(), static_cast<int64_t>(data->size()));
  if (!st.ok())
    return grpc::Status(grpc::StatusCode::DATA_LOSS,
                        absl::StrCat("checkpoint step ", step, " of ", job_id, " refused: ", st.message()));
  // Verified first (a corrupt upload is DATA_LOSS whoever sent it), recorded only for the
  // placement that counts.
  if (!jobs_->AcceptsResults(job_id, attempt))
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("checkpoint step ", step, " of ", job_id, " comes from placement ", attempt,
                                     ", which was superseded; it is not recorded"));
  CheckpointRecord rec{job_id, step, sha, static_cast<int64_t>(data->size()), artifacts_->PathOf(sha)};
  st = store_->PutCheckpoint(rec);
  if (!st.ok()) return ToGrpc(st);
  *resp->mutable_checkpoint() = ToProto(rec);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Download(grpc::ServerContext*, const v1::DownloadRequest* req,
                                         grpc::ServerWriter<v1::DownloadChunk>* w) {
  return StreamArtifact(artifacts_, req->sha256(), w);
}

}  // namespace polytune::coordinator
