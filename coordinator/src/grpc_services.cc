#include "polytune/coordinator/grpc_services.h"

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "polytune/coordinator/grpc_config.h"
#include "polytune/coordinator/proto_convert.h"

namespace polytune::coordinator {
namespace {

grpc::Status StreamArtifact(ArtifactStore* artifacts, const std::string& sha,
                            grpc::ServerWriter<v1::DownloadChunk>* w) {
  auto data = artifacts->Get(sha);
  if (!data.ok()) return ToGrpc(data.status());
  for (size_t pos = 0; pos < data->size() || pos == 0; pos += kMaxChunkBytes) {
    v1::DownloadChunk c;
    c.set_data(data->substr(pos, kMaxChunkBytes));
    if (!w->Write(c)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    if (data->empty()) break;
  }
  return grpc::Status::OK;
}

// resources.world_size from a submitted spec.
absl::StatusOr<int32_t> WorldSize(const std::string& spec) {
  try {
    YAML::Node root = YAML::Load(spec);
    YAML::Node r = root["resources"];
    if (!r.IsDefined() || !r["world_size"].IsDefined())
      return absl::InvalidArgumentError("spec: 'resources.world_size' is required");
    int32_t n = r["world_size"].as<int32_t>();
    if (n < 1) return absl::InvalidArgumentError("spec: 'resources.world_size' must be at least 1");
    return n;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec: invalid YAML or resources.world_size: ", e.msg));
  }
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(static_cast<int>(s.error_code())), s.error_message());
}

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* req,
                                       v1::SubmitJobResponse* resp) {
  auto world = WorldSize(req->spec_yaml());
  if (!world.ok()) return ToGrpc(world.status());
  auto job = jobs_->Submit(req->name(), req->priority(), *world, req->spec_yaml());
  if (!job.ok()) return ToGrpc(job.status());
  *resp->mutable_job() = ToProto(*job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext*, const v1::GetJobRequest* req, v1::GetJobResponse* resp) {
  auto job = jobs_->Get(req->id());
  if (!job.ok()) return ToGrpc(job.status());
  *resp->mutable_job() = ToProto(*job);
  auto metrics = store_->Metrics(req->id());
  if (!metrics.ok()) return ToGrpc(metrics.status());
  for (const auto& m : *metrics) resp->add_metrics_json(m);
  auto cks = store_->Checkpoints(req->id());
  if (!cks.ok()) return ToGrpc(cks.status());
  for (const auto& c : *cks) *resp->add_checkpoints() = ToProto(c);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetLogs(grpc::ServerContext*, const v1::GetLogsRequest* req, v1::GetLogsResponse* resp) {
  auto job = jobs_->Get(req->id());
  if (!job.ok()) return ToGrpc(job.status());
  auto lines = store_->Logs(req->id(), req->after_seq(), kMaxLogLinesPerReply);
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
  v1::UploadArtifactChunk chunk;
  std::string data, sha;
  while (reader->Read(&chunk)) {
    if (chunk.data().size() > static_cast<size_t>(kMaxChunkBytes))
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "artifact chunk larger than 1 MiB");
    if (sha.empty()) sha = chunk.sha256();
    data += chunk.data();
  }
  absl::Status st = artifacts_->Put(data, sha);
  if (!st.ok()) return ToGrpc(st);
  resp->set_sha256(sha);
  resp->set_size_bytes(static_cast<int64_t>(data.size()));
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::Download(grpc::ServerContext*, const v1::DownloadRequest* req,
                                      grpc::ServerWriter<v1::DownloadChunk>* w) {
  return StreamArtifact(artifacts_, req->sha256(), w);
}

grpc::Status JobServiceImpl::ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                                         v1::ListWorkersResponse* resp) {
  auto free = jobs_->FreeDevices();
  for (const auto& w : jobs_->Workers()) {
    auto* p = resp->add_workers();
    p->set_id(w.id);
    p->set_address(w.address);
    p->set_devices(w.slots());
    p->set_free_devices(w.alive ? free[w.id] : 0);
    p->set_alive(w.alive);
    p->set_last_heartbeat_unix_micros(w.last_heartbeat_micros);
  }
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext*, const v1::RegisterRequest* req,
                                         v1::RegisterResponse* resp) {
  auto worker = FromProto(*req);
  if (!worker.ok()) return ToGrpc(worker.status());
  absl::Status st = jobs_->RegisterWorker(*worker);
  if (!st.ok()) return ToGrpc(st);
  resp->set_heartbeat_interval_ms(1000);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                                          v1::HeartbeatResponse* resp) {
  std::vector<RankReport> ranks;
  for (const auto& r : req->ranks()) ranks.push_back(FromProto(r));
  auto reply = jobs_->Heartbeat(req->worker_id(), req->incarnation(), ranks);
  if (!reply.ok()) return ToGrpc(reply.status());
  for (const auto& a : reply->start) *resp->add_start() = ToProto(a);
  for (const auto& c : reply->cancel_jobs) resp->add_cancel_jobs(c);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportMetrics(grpc::ServerContext*, const v1::ReportMetricsRequest* req,
                                              v1::ReportMetricsResponse*) {
  auto job = jobs_->Get(req->job_id());
  if (!job.ok()) return ToGrpc(job.status());
  for (const auto& m : req->metrics_json()) {
    absl::Status st = store_->AppendMetric(req->job_id(), m);
    if (!st.ok()) return ToGrpc(st);
  }
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportLogs(grpc::ServerContext*, const v1::ReportLogsRequest* req,
                                           v1::ReportLogsResponse*) {
  auto job = jobs_->Get(req->job_id());
  if (!job.ok()) return ToGrpc(job.status());
  std::vector<std::string> lines;
  for (const auto& line : req->lines())  // one runaway line must not fill the database
    lines.push_back(line.size() > kMaxLogLineBytes ? line.substr(0, kMaxLogLineBytes) + " [truncated]" : line);
  return ToGrpc(store_->AppendLogs(req->job_id(), req->rank(), lines));
}

grpc::Status WorkerServiceImpl::UploadCheckpoint(grpc::ServerContext*,
                                                 grpc::ServerReader<v1::UploadCheckpointChunk>* reader,
                                                 v1::UploadCheckpointResponse* resp) {
  v1::UploadCheckpointChunk chunk;
  std::string data, sha, job_id;
  int64_t step = -1;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (chunk.data().size() > static_cast<size_t>(kMaxChunkBytes))
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "checkpoint chunk larger than 1 MiB; not recorded");
    if (first) {
      job_id = chunk.job_id();
      step = chunk.step();
      sha = chunk.sha256();
      first = false;
    }
    data += chunk.data();
  }
  if (!jobs_->Get(job_id).ok()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "checkpoint for an unknown job");
  absl::Status st = artifacts_->Put(data, sha);
  if (!st.ok())
    return grpc::Status(grpc::StatusCode::DATA_LOSS,
                        absl::StrCat("checkpoint step ", step, " of ", job_id, " refused: ", st.message()));
  CheckpointRecord rec{job_id, step, sha, static_cast<int64_t>(data.size()), artifacts_->PathOf(sha)};
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
