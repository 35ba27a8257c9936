// gRPC settings shared by the coordinator, the worker daemon and the CLI, so keepalive on
// both sides agrees (a client pinging faster than the server allows gets GOAWAY).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

namespace polytune::rpc {

constexpr int kKeepaliveTimeMs = 20000;         // client pings an idle connection every 20 s
constexpr int kKeepaliveTimeoutMs = 10000;      // and drops it if no ack within 10 s
constexpr int kMaxChunkBytes = 1 << 20;         // upload/download chunk size
constexpr size_t kMaxLogLineBytes = 4096;       // longer rank output lines are cut
constexpr int64_t kMaxLogLinesPerReply = 5000;  // GetLogs pages; clients ask again with after_seq
constexpr int64_t kMaxMetricsPerReply = 5000;   // GetMetrics pages; clients ask again with after_seq
constexpr int kMaxMessageBytes = 8 << 20;

// Deadlines of the calls, in seconds: short for control calls, long for bulk transfers.
constexpr double kControlDeadlineSeconds = 10;
constexpr double kTransferDeadlineSeconds = 600;

void ConfigureServer(grpc::ServerBuilder& builder);
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target);
// A context with a deadline `seconds` from now.
std::unique_ptr<grpc::ClientContext> ContextWithDeadline(double seconds);

}  // namespace polytune::rpc
