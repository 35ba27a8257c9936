// The access check at the coordinator's gRPC edge: the caller's bearer token (metadata
// `authorization: Bearer TOKEN`) names a principal, whose role must be allowed to call the
// method (AccessRules). Ownership checks stay with the services.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "polytune/coordinator/access.h"

namespace polytune::coordinator {

class Authorizer {
 public:
  // `tokens` null: authentication is off (loopback demo, tests) and every caller is an
  // anonymous admin.
  explicit Authorizer(const TokenRegistry* tokens = nullptr) : tokens_(tokens) {}
  bool enabled() const { return tokens_ != nullptr; }
  // UNAUTHENTICATED without a known token, PERMISSION_DENIED when the role may not call
  // `method` (full name, "/polytune.v1.JobService/SubmitJob").
  absl::StatusOr<Principal> Check(const grpc::ServerContext* ctx, const std::string& method) const;

 private:
  const TokenRegistry* tokens_;
};

}  // namespace polytune::coordinator
