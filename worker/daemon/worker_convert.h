// Worker domain <-> proto, at the worker daemon's gRPC edge only.
#pragma once

#include "absl/status/statusor.h"
#include "polytune/rpc/rank_convert.h"
#include "polytune/v1/polytune.pb.h"
#include "worker_types.h"

namespace polytune::worker {

// Rank assignments and reports convert in polytune::rpc, shared with the coordinator.
using rpc::FromProto;
using rpc::ToProto;

// With the ranks the daemon runs or has not reported yet (re-attached after a coordinator
// restart).
v1::RegisterRequest ToProto(const Registration& r, const std::vector<RankReport>& ranks = {});
Orders FromProto(const v1::HeartbeatResponse& r);

}  // namespace polytune::worker
