// polytune::MetricsRecord <-> v1::MetricsRecord, at the gRPC edge of every service that
// carries metrics (workers report them, the coordinator serves them, the CLI reads them).
#pragma once

#include "absl/status/statusor.h"
#include "polytune/common/metrics_record.h"
#include "polytune/v1/polytune.pb.h"

namespace polytune::rpc {

v1::MetricsRecord ToProto(const MetricsRecord& record);
// INVALID_ARGUMENT for a record with neither a step nor an eval.
absl::StatusOr<MetricsRecord> FromProto(const v1::MetricsRecord& record);

}  // namespace polytune::rpc
