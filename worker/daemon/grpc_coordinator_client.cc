// CoordinatorClient over gRPC: translation only (worker_convert.cc, polytune::rpc).
#include <memory>
#include <mutex>

#include "coordinator_client.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/metrics_convert.h"
#include "polytune/rpc/status.h"
#include "polytune/rpc/transfer.h"
#include "polytune/v1/polytune.grpc.pb.h"
#include "worker_convert.h"

namespace polytune::worker {
namespace {

using rpc::ContextWithDeadline;
using rpc::FromGrpc;

class GrpcCoordinatorClient final : public CoordinatorClient {
 public:
  explicit GrpcCoordinatorClient(const std::string& target)
      : stub_(v1::WorkerService::NewStub(rpc::MakeChannel(target))) {}

  absl::StatusOr<int64_t> Register(const Registration& registration, const std::vector<RankReport>& ranks) override {
    {
      std::lock_guard<std::mutex> l(mu_);  // reports name the worker they come from
      worker_id_ = registration.worker_id;
      incarnation_ = registration.incarnation;
    }
    v1::RegisterResponse resp;
    auto ctx = ContextWithDeadline(5);
    absl::Status st = FromGrpc(stub_->Register(ctx.get(), ToProto(registration, ranks), &resp));
    if (!st.ok()) return st;
    return resp.heartbeat_interval_ms() * 1000;
  }

  absl::StatusOr<Orders> Heartbeat(const std::string& worker_id, const std::string& incarnation,
                                   const std::vector<RankReport>& ranks, bool shutting_down) override {
    v1::HeartbeatRequest req;
    req.set_worker_id(worker_id);
    req.set_incarnation(incarnation);
    req.set_shutting_down(shutting_down);
    for (const auto& r : ranks) *req.add_ranks() = ToProto(r);
    v1::HeartbeatResponse resp;
    auto ctx = ContextWithDeadline(5);
    absl::Status st = FromGrpc(stub_->Heartbeat(ctx.get(), req, &resp));
    if (!st.ok()) return st;
    return FromProto(resp);
  }

  absl::StatusOr<std::string> Download(const std::string& sha256) override {
    return rpc::DownloadVerified(*stub_, sha256);
  }

  absl::Status ReportLogs(const std::string& job_id, int32_t rank, const std::vector<std::string>& lines) override {
    v1::ReportLogsRequest req;
    req.set_job_id(job_id);
    req.set_rank(rank);
    Identify(req);
    for (const auto& l : lines) req.add_lines(l);
    v1::ReportLogsResponse resp;
    auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
    return FromGrpc(stub_->ReportLogs(ctx.get(), req, &resp));
  }

  absl::Status ReportMetrics(const std::string& job_id, int32_t attempt,
                             const std::vector<MetricsRecord>& records) override {
    v1::ReportMetricsRequest req;
    req.set_job_id(job_id);
    req.set_attempt(attempt);
    Identify(req);
    for (const auto& r : records) *req.add_records() = rpc::ToProto(r);
    v1::ReportMetricsResponse resp;
    auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
    return FromGrpc(stub_->ReportMetrics(ctx.get(), req, &resp));
  }

  absl::Status UploadCheckpoint(const std::string& job_id, int32_t attempt, int64_t step,
                                const std::string& bundle) override {
    auto ctx = ContextWithDeadline(rpc::kTransferDeadlineSeconds);
    v1::UploadCheckpointResponse resp;
    auto writer = stub_->UploadCheckpoint(ctx.get(), &resp);
    const std::string sha = Sha256Hex(bundle);
    return rpc::WriteChunked<v1::UploadCheckpointChunk>(writer.get(), bundle, [&](v1::UploadCheckpointChunk& c) {
      c.set_job_id(job_id);
      c.set_step(step);
      c.set_sha256(sha);
      c.set_attempt(attempt);
      Identify(c);
    });
  }

 private:
  template <typename Message>
  void Identify(Message& m) {
    std::lock_guard<std::mutex> l(mu_);
    m.set_worker_id(worker_id_);
    m.set_incarnation(incarnation_);
  }
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::mutex mu_;  // the uploader's thread reports while the agent registers
  std::string worker_id_, incarnation_;
};

}  // namespace

std::unique_ptr<CoordinatorClient> MakeGrpcCoordinatorClient(const std::string& target) {
  return std::make_unique<GrpcCoordinatorClient>(target);
}

}  // namespace polytune::worker
