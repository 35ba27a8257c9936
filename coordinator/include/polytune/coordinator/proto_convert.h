// Domain <-> proto conversion, at the gRPC edge only.
#pragma once

#include "absl/status/statusor.h"
#include "polytune/coordinator/domain.h"
#include "polytune/coordinator/job_manager.h"
#include "polytune/coordinator/store.h"
#include "polytune/rpc/rank_convert.h"
#include "polytune/v1/polytune.pb.h"

namespace polytune::coordinator {

// Rank assignments and reports convert in polytune::rpc, shared with the worker daemon.
using rpc::FromProto;
using rpc::ToProto;

v1::JobState ToProto(JobState s);
absl::StatusOr<JobState> FromProto(v1::JobState s);
v1::Job ToProto(const Job& job);
absl::StatusOr<Job> FromProto(const v1::Job& job);
v1::Checkpoint ToProto(const CheckpointRecord& c);
v1::DeviceInfo ToProto(const Device& d);
Device FromProto(const v1::DeviceInfo& d);
// A registration request as a domain worker (the registry stamps the heartbeat time).
absl::StatusOr<Worker> FromProto(const v1::RegisterRequest& r);
v1::LogLine ToProto(const LogLine& l);

}  // namespace polytune::coordinator
