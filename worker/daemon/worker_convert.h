// Worker domain <-> proto, at the worker daemon's gRPC edge only.
#pragma once

#include "absl/status/statusor.h"
#include "polytune/v1/polytune.pb.h"
#include "worker_types.h"

namespace polytune::worker {

v1::RegisterRequest ToProto(const Registration& r);
v1::RankStatus ToProto(const RankReport& r);
RankAssignment FromProto(const v1::RankAssignment& a);
Orders FromProto(const v1::HeartbeatResponse& r);

}  // namespace polytune::worker
