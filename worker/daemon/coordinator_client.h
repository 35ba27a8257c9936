// Everything the worker daemon asks of the coordinator, behind an interface: the gRPC
// implementation (grpc_coordinator_client.cc) only translates, and tests use a fake.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/common/metrics_record.h"
#include "worker_types.h"

namespace polytune::worker {

class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;
  // Returns the heartbeat interval the coordinator asks for, in microseconds.
  // `ranks`: those this daemon runs or has not reported, for the coordinator to re-attach.
  virtual absl::StatusOr<int64_t> Register(const Registration& registration, const std::vector<RankReport>& ranks) = 0;
  // FAILED_PRECONDITION means the coordinator does not know this incarnation: register again.
  // `shutting_down`: the daemon is stopping; place nothing more here.
  virtual absl::StatusOr<Orders> Heartbeat(const std::string& worker_id, const std::string& incarnation,
                                           const std::vector<RankReport>& ranks, bool shutting_down) = 0;
  // An artifact's bytes, verified against its sha256.
  virtual absl::StatusOr<std::string> Download(const std::string& sha256) = 0;
  // The methods below are called from the result uploader's thread; implementations must be
  // thread-safe.
  virtual absl::Status ReportLogs(const std::string& job_id, int32_t rank, const std::vector<std::string>& lines) = 0;
  // `attempt` is the rank's placement; FAILED_PRECONDITION from UploadCheckpoint means it was
  // superseded (the checkpoint will never be recorded: do not retry).
  virtual absl::Status ReportMetrics(const std::string& job_id, int32_t attempt,
                                     const std::vector<MetricsRecord>& records) = 0;
  virtual absl::Status UploadCheckpoint(const std::string& job_id, int32_t attempt, int64_t step,
                                        const std::string& bundle) = 0;
};

std::unique_ptr<CoordinatorClient> MakeGrpcCoordinatorClient(const std::string& target);

}  // namespace polytune::worker
