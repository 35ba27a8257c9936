// absl::Status <-> grpc::Status. The codes share their numbering, so the mapping is 1:1 and
// the message travels unchanged.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace polytune::rpc {

grpc::Status ToGrpc(const absl::Status& s);
absl::Status FromGrpc(const grpc::Status& s);

}  // namespace polytune::rpc
