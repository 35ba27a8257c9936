// polytune_grpc_requests_total{method,code} and polytune_grpc_request_duration_seconds{method}
// for every RPC a server handles, through a gRPC server interceptor (so no service method has
// to remember to count itself).
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/registry.h>

#include <memory>
#include <vector>

namespace polytune::rpc {

// Registers the two families on `registry` and returns the interceptor factories to install
// with builder.experimental().SetInterceptorCreators(...). `registry` must outlive the server.
std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> MakeGrpcMetricsInterceptors(
    prometheus::Registry& registry);

}  // namespace polytune::rpc
