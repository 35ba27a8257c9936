#include "polytune/coordinator/grpc_services.h"

#include "absl/strings/str_cat.h"
#include "polytune/common/status_macros.h"
#include "polytune/coordinator/best_checkpoint.h"
#include "polytune/coordinator/proto_convert.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/metrics_convert.h"
#include "polytune/rpc/status.h"
#include "polytune/rpc/transfer.h"
#include "polytune/spec/job_spec.h"

namespace polytune::coordinator {
namespace {

using rpc::ToGrpc;

const std::string kJobs = "/polytune.v1.JobService/";
const std::string kWorkers = "/polytune.v1.WorkerService/";

// The principal making the call, or the status refusing it.
#define POLYTUNE_AUTHORIZE(who, method)                 \
  auto who##_or = auth_->Check(ctx, method);            \
  if (!who##_or.ok()) return ToGrpc(who##_or.status()); \
  const Principal& who = *who##_or

// A report over a per-call limit: refused whole (nothing stored), so the sender splits it.
absl::Status TooMany(const char* what, int got, int most) {
  return absl::InvalidArgumentError(
      absl::StrCat(got, " ", what, " in one call; at most ", most, " are accepted: send them in batches"));
}

grpc::Status StreamArtifact(ArtifactStore* artifacts, const std::string& sha,
                            grpc::ServerWriter<v1::DownloadChunk>* w) {
  if (!IsSha256Hex(sha))
    return ToGrpc(absl::InvalidArgumentError(absl::StrCat("'", sha, "' is not a sha256 hex digest")));
  if (!artifacts->Has(sha)) return ToGrpc(absl::NotFoundError(absl::StrCat("no artifact ", sha)));
  return rpc::StreamFile(w, artifacts->PathOf(sha));
}

}  // namespace

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* ctx, const v1::SubmitJobRequest* req,
                                       v1::SubmitJobResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kJobs + "SubmitJob");
  if (req->spec_yaml().size() > kMaxSpecBytes)
    return ToGrpc(absl::InvalidArgumentError(
        absl::StrCat("submitted spec is ", req->spec_yaml().size(), " bytes; at most ", kMaxSpecBytes,
                     " are accepted (data goes in uploaded files, not the spec)")));
  if (req->name().size() > kMaxJobNameBytes)
    return ToGrpc(absl::InvalidArgumentError(
        absl::StrCat("job name is ", req->name().size(), " bytes; at most ", kMaxJobNameBytes)));
  // The same parser and rules as the CLI; paths must be absolute here (no base folder).
  auto spec = spec::ParseJobSpec(req->spec_yaml(), "submitted spec", "", spec::SpecUse::kSubmission);
  if (!spec.ok()) return ToGrpc(spec.status());
  for (const auto& [key, d] :
       {std::make_pair("data.train", &spec->data.train), std::make_pair("data.eval", &spec->data.eval)})
    if (d->is_artifact()) {
      if (!artifacts_->Has(d->sha256()))
        return ToGrpc(
            absl::FailedPreconditionError(absl::StrCat("submitted spec: '", key, "' names artifact ", d->sha256(),
                                                       ", which was never uploaded; upload it first")));
      // A user trains only on data it uploaded (or it could read others' data through a job).
      absl::Status own = MayRead(who, d->sha256());
      if (!own.ok()) return ToGrpc(own);
    }
  auto job = jobs_->Submit(req->name(), req->priority(), spec->resources->world_size, spec::ToCanonicalYaml(*spec),
                           spec->model.path, {spec->resources->max_restarts, spec->resources->preemptible}, who.name);
  if (!job.ok()) return ToGrpc(job.status());
  *resp->mutable_job() = ToProto(*job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req, v1::GetJobResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kJobs + "GetJob");
  auto job = OwnJob(who, req->id());
  if (!job.ok()) return ToGrpc(job.status());
  *resp->mutable_job() = ToProto(*job);
  auto cks = store_->Checkpoints(req->id());
  if (!cks.ok()) return ToGrpc(cks.status());
  for (const auto& c : *cks) *resp->add_checkpoints() = ToProto(c);
  auto best = FindBestCheckpoint(*store_, *job);
  if (!best.ok()) return ToGrpc(best.status());
  resp->set_best_checkpoint_step(best->value_or(0));
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetMetrics(grpc::ServerContext* ctx, const v1::GetMetricsRequest* req,
                                        v1::GetMetricsResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kJobs + "GetMetrics");
  auto job = OwnJob(who, req->id());
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

grpc::Status JobServiceImpl::GetLogs(grpc::ServerContext* ctx, const v1::GetLogsRequest* req,
                                     v1::GetLogsResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kJobs + "GetLogs");
  auto job = OwnJob(who, req->id());
  if (!job.ok()) return ToGrpc(job.status());
  auto lines = store_->Logs(req->id(), req->after_seq(), rpc::kMaxLogLinesPerReply);
  if (!lines.ok()) return ToGrpc(lines.status());
  for (const auto& l : *lines) *resp->add_lines() = ToProto(l);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest*,
                                      v1::ListJobsResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kJobs + "ListJobs");
  for (const auto& j : jobs_->List())
    if (who.role != Role::kUser || j.owner == who.name) *resp->add_jobs() = ToProto(j);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req,
                                       v1::CancelJobResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kJobs + "CancelJob");
  auto own = OwnJob(who, req->id());
  if (!own.ok()) return ToGrpc(own.status());
  auto job = jobs_->Cancel(req->id());
  if (!job.ok()) return ToGrpc(job.status());
  *resp->mutable_job() = ToProto(*job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::UploadArtifact(grpc::ServerContext* ctx,
                                            grpc::ServerReader<v1::UploadArtifactChunk>* reader,
                                            v1::UploadArtifactResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kJobs + "UploadArtifact");
  std::string sha;
  std::unique_ptr<ArtifactUpload> upload;
  absl::Status st = rpc::ReadChunks<v1::UploadArtifactChunk>(
      reader,
      [&](const v1::UploadArtifactChunk& c) -> absl::Status {
        sha = c.sha256();
        ASSIGN_OR_RETURN(upload, artifacts_->BeginUpload(sha));
        return absl::OkStatus();
      },
      [&](absl::string_view bytes) { return upload->Append(bytes); });
  if (st.ok()) st = upload->Commit();
  if (!st.ok()) return ToGrpc(st);
  if (auth_->enabled()) {
    st = store_->AddArtifactOwner(sha, who.name);
    if (!st.ok()) return ToGrpc(st);
  }
  resp->set_sha256(sha);
  resp->set_size_bytes(upload->size());
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::Download(grpc::ServerContext* ctx, const v1::DownloadRequest* req,
                                      grpc::ServerWriter<v1::DownloadChunk>* w) {
  POLYTUNE_AUTHORIZE(who, kJobs + "Download");
  absl::Status own = MayRead(who, req->sha256());
  if (!own.ok()) return ToGrpc(own);
  return StreamArtifact(artifacts_, req->sha256(), w);
}

absl::Status JobServiceImpl::MayRead(const Principal& who, const std::string& sha256) const {
  if (who.role != Role::kUser) return absl::OkStatus();
  auto owners = store_->ArtifactOwners(sha256);
  if (!owners.ok()) return owners.status();
  if (std::find(owners->begin(), owners->end(), who.name) != owners->end()) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("artifact ", sha256, " is neither a dataset you uploaded nor a checkpoint of your jobs"));
}

absl::StatusOr<Job> JobServiceImpl::OwnJob(const Principal& who, const std::string& id) const {
  auto job = jobs_->Get(id);
  if (!job.ok()) return job.status();
  if (who.role == Role::kUser && job->owner != who.name)
    return absl::PermissionDeniedError(absl::StrCat(id, " belongs to another user; you can act on your own jobs only"));
  return job;
}

grpc::Status JobServiceImpl::ListWorkers(grpc::ServerContext* ctx, const v1::ListWorkersRequest*,
                                         v1::ListWorkersResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kJobs + "ListWorkers");
  (void)who;
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

grpc::Status JobServiceImpl::DrainWorker(grpc::ServerContext* ctx, const v1::DrainWorkerRequest* req,
                                         v1::DrainWorkerResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kJobs + "DrainWorker");
  (void)who;
  auto w = jobs_->Drain(req->id(), req->let_finish());
  if (!w.ok()) return ToGrpc(w.status());
  *resp->mutable_worker() = Info(*w);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::UndrainWorker(grpc::ServerContext* ctx, const v1::UndrainWorkerRequest* req,
                                           v1::UndrainWorkerResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kJobs + "UndrainWorker");
  (void)who;
  auto w = jobs_->Undrain(req->id());
  if (!w.ok()) return ToGrpc(w.status());
  *resp->mutable_worker() = Info(*w);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req,
                                         v1::RegisterResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kWorkers + "Register");
  if (req->ranks_size() > kMaxRanksPerReport) return ToGrpc(TooMany("ranks", req->ranks_size(), kMaxRanksPerReport));
  auto worker = FromProto(*req);
  if (!worker.ok()) return ToGrpc(worker.status());
  if (auth_->enabled()) {
    // Only the principal that registered a live worker may register it again (a restarted
    // daemon), so no one can take over a worker's name and fail or hijack its jobs.
    std::optional<Worker> known = jobs_->FindWorker(worker->id);
    if (known && known->alive && !known->registered_by.empty() && known->registered_by != who.name)
      return ToGrpc(absl::PermissionDeniedError(absl::StrCat(
          "worker '", worker->id, "' is alive and registered by another principal; use its token or another --name")));
    worker->registered_by = who.name;
  }
  std::vector<RankReport> ranks;
  for (const auto& r : req->ranks()) ranks.push_back(FromProto(r));
  absl::Status st = jobs_->RegisterWorker(*worker, ranks);
  if (!st.ok()) return ToGrpc(st);
  resp->set_heartbeat_interval_ms(heartbeat_interval_ms_);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* req,
                                          v1::HeartbeatResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kWorkers + "Heartbeat");
  if (req->ranks_size() > kMaxRanksPerReport) return ToGrpc(TooMany("ranks", req->ranks_size(), kMaxRanksPerReport));
  absl::Status mine = CheckWorker(who, req->worker_id(), req->incarnation());
  if (!mine.ok()) return ToGrpc(mine);
  std::vector<RankReport> ranks;
  for (const auto& r : req->ranks()) ranks.push_back(FromProto(r));
  auto reply = jobs_->Heartbeat(req->worker_id(), req->incarnation(), ranks, req->shutting_down());
  if (!reply.ok()) return ToGrpc(reply.status());
  for (const auto& a : reply->start) *resp->add_start() = ToProto(a);
  for (const auto& c : reply->cancel_jobs) resp->add_cancel_jobs(c);
  for (const auto& c : reply->preempt_jobs) resp->add_preempt_jobs(c);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportMetrics(grpc::ServerContext* ctx, const v1::ReportMetricsRequest* req,
                                              v1::ReportMetricsResponse*) {
  POLYTUNE_AUTHORIZE(who, kWorkers + "ReportMetrics");
  if (req->records_size() > kMaxRecordsPerReport)
    return ToGrpc(TooMany("metrics records", req->records_size(), kMaxRecordsPerReport));
  absl::Status mine = CheckReporter(who, req->worker_id(), req->incarnation(), req->job_id());
  if (!mine.ok()) return ToGrpc(mine);
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

grpc::Status WorkerServiceImpl::ReportLogs(grpc::ServerContext* ctx, const v1::ReportLogsRequest* req,
                                           v1::ReportLogsResponse*) {
  POLYTUNE_AUTHORIZE(who, kWorkers + "ReportLogs");
  if (req->lines_size() > kMaxRecordsPerReport)
    return ToGrpc(TooMany("log lines", req->lines_size(), kMaxRecordsPerReport));
  absl::Status mine = CheckReporter(who, req->worker_id(), req->incarnation(), req->job_id());
  if (!mine.ok()) return ToGrpc(mine);
  auto job = jobs_->Get(req->job_id());
  if (!job.ok()) return ToGrpc(job.status());
  std::vector<std::string> lines;
  for (const auto& line : req->lines())  // one runaway line must not fill the database
    lines.push_back(line.size() > rpc::kMaxLogLineBytes ? line.substr(0, rpc::kMaxLogLineBytes) + " [truncated]"
                                                        : line);
  return ToGrpc(store_->AppendLogs(req->job_id(), req->rank(), lines));
}

grpc::Status WorkerServiceImpl::UploadCheckpoint(grpc::ServerContext* ctx,
                                                 grpc::ServerReader<v1::UploadCheckpointChunk>* reader,
                                                 v1::UploadCheckpointResponse* resp) {
  POLYTUNE_AUTHORIZE(who, kWorkers + "UploadCheckpoint");
  std::string sha, job_id, worker_id, incarnation;
  int64_t step = -1;
  int32_t attempt = 0;
  std::unique_ptr<ArtifactUpload> upload;
  // The sender and the job are checked on the first chunk, before a byte is stored.
  absl::Status st = rpc::ReadChunks<v1::UploadCheckpointChunk>(
      reader,
      [&](const v1::UploadCheckpointChunk& c) -> absl::Status {
        job_id = c.job_id();
        step = c.step();
        sha = c.sha256();
        attempt = c.attempt();
        worker_id = c.worker_id();
        incarnation = c.incarnation();
        RETURN_IF_ERROR(CheckReporter(who, worker_id, incarnation, job_id));
        if (!jobs_->Get(job_id).ok()) return absl::NotFoundError("checkpoint for an unknown job");
        ASSIGN_OR_RETURN(upload, artifacts_->BeginUpload(sha));
        return absl::OkStatus();
      },
      [&](absl::string_view bytes) { return upload->Append(bytes); });
  if (!upload) return ToGrpc(st);  // refused before any bytes: nothing to count
  if (st.ok()) st = upload->Commit();
  if (metrics_) metrics_->OnCheckpointUpload(st.ok(), upload->size());
  if (st.code() == absl::StatusCode::kResourceExhausted) return ToGrpc(st);  // storage full: retry later
  if (st.code() == absl::StatusCode::kInvalidArgument) return ToGrpc(st);    // a malformed chunk or digest
  if (!st.ok())
    return grpc::Status(grpc::StatusCode::DATA_LOSS,
                        absl::StrCat("checkpoint step ", step, " of ", job_id, " refused: ", st.message()));
  // Verified first (a corrupt upload is DATA_LOSS whoever sent it), recorded only for the
  // placement that counts.
  if (!jobs_->AcceptsResults(job_id, attempt))
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("checkpoint step ", step, " of ", job_id, " comes from placement ", attempt,
                                     ", which was superseded; it is not recorded"));
  CheckpointRecord rec{job_id, step, sha, upload->size(), artifacts_->PathOf(sha)};
  auto job = jobs_->Get(job_id);
  if (job.ok() && !job->owner.empty()) {  // the job's owner may download it
    st = store_->AddArtifactOwner(sha, job->owner);
    if (!st.ok()) return ToGrpc(st);
  }
  st = store_->PutCheckpoint(rec);
  if (!st.ok()) return ToGrpc(st);
  *resp->mutable_checkpoint() = ToProto(rec);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Download(grpc::ServerContext* ctx, const v1::DownloadRequest* req,
                                         grpc::ServerWriter<v1::DownloadChunk>* w) {
  POLYTUNE_AUTHORIZE(who, kWorkers + "Download");
  (void)who;
  return StreamArtifact(artifacts_, req->sha256(), w);
}

absl::Status WorkerServiceImpl::CheckWorker(const Principal& who, const std::string& worker_id,
                                            const std::string& incarnation) const {
  if (!auth_->enabled() || who.role == Role::kAdmin) return absl::OkStatus();
  std::optional<Worker> w = jobs_->FindWorker(worker_id);
  if (!w)
    return absl::FailedPreconditionError(absl::StrCat("worker '", worker_id, "' is not registered; register again"));
  if (w->registered_by != who.name || w->incarnation != incarnation)
    return absl::PermissionDeniedError(
        absl::StrCat("worker '", worker_id, "' (incarnation ", incarnation, ") was not registered by ", who.name));
  return absl::OkStatus();
}

absl::Status WorkerServiceImpl::CheckReporter(const Principal& who, const std::string& worker_id,
                                              const std::string& incarnation, const std::string& job_id) const {
  if (!auth_->enabled() || who.role == Role::kAdmin) return absl::OkStatus();
  absl::Status st = CheckWorker(who, worker_id, incarnation);
  if (!st.ok()) return st;
  if (!jobs_->IsPlacedOn(job_id, worker_id))
    return absl::PermissionDeniedError(
        absl::StrCat("worker '", worker_id, "' runs no rank of ", job_id, "; it may report only on its own ranks"));
  return absl::OkStatus();
}

}  // namespace polytune::coordinator
