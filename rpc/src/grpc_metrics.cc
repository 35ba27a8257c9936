#include "polytune/rpc/grpc_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <chrono>
#include <map>
#include <mutex>
#include <string>

namespace polytune::rpc {
namespace {

namespace gx = grpc::experimental;

const char* CodeName(grpc::StatusCode code) {
  static const char* kNames[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

class GrpcMetrics {
 public:
  explicit GrpcMetrics(prometheus::Registry& registry)
      : requests_(prometheus::BuildCounter()
                      .Name("polytune_grpc_requests_total")
                      .Help("gRPC requests handled, by method and status code.")
                      .Register(registry)),
        duration_(prometheus::BuildHistogram()
                      .Name("polytune_grpc_request_duration_seconds")
                      .Help("Time from a request's arrival to its status, by method.")
                      .Register(registry)) {}

  void Record(const std::string& method, grpc::StatusCode code, double seconds) {
    // Family::Add is thread-safe and returns the existing series for known labels.
    requests_.Add({{"method", method}, {"code", CodeName(code)}}).Increment();
    duration_
        .Add({{"method", method}}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                           0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60})
        .Observe(seconds);
  }

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
};

class MetricsInterceptor : public gx::Interceptor {
 public:
  MetricsInterceptor(gx::ServerRpcInfo* info, GrpcMetrics* metrics)
      : method_(info->method() && info->method()[0] == '/' ? info->method() + 1
                : info->method()                           ? info->method()
                                                           : "?"),
        metrics_(metrics),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      metrics_->Record(method_, status.error_code(),
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    }
    methods->Proceed();
  }

 private:
  std::string method_;
  GrpcMetrics* metrics_;
  std::chrono::steady_clock::time_point start_;
};

class MetricsInterceptorFactory : public gx::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(std::shared_ptr<GrpcMetrics> metrics) : metrics_(std::move(metrics)) {}
  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override {
    return new MetricsInterceptor(info, metrics_.get());
  }

 private:
  std::shared_ptr<GrpcMetrics> metrics_;
};

}  // namespace

std::vector<std::unique_ptr<gx::ServerInterceptorFactoryInterface>> MakeGrpcMetricsInterceptors(
    prometheus::Registry& registry) {
  std::vector<std::unique_ptr<gx::ServerInterceptorFactoryInterface>> out;
  out.push_back(std::make_unique<MetricsInterceptorFactory>(std::make_shared<GrpcMetrics>(registry)));
  return out;
}

}  // namespace polytune::rpc
