// RankAssignment / RankReport <-> their WorkerService messages, used by the coordinator's
// services and by the worker daemon's client alike.
#pragma once

#include "polytune/common/rank_types.h"
#include "polytune/v1/polytune.pb.h"

namespace polytune::rpc {

v1::RankAssignment ToProto(const RankAssignment& a);
RankAssignment FromProto(const v1::RankAssignment& a);
v1::RankStatus ToProto(const RankReport& r);
RankReport FromProto(const v1::RankStatus& s);

}  // namespace polytune::rpc
