// Fuzz target: every unary request of both coordinator services, as a raw client could send
// it, through the real handlers (proto -> domain conversion, validation, the job manager) on
// an in-memory store; and the worker's conversion of heartbeat replies. The input is a
// sequence of calls, so registering, submitting and reporting can build on each other:
//   [selector byte: method = low 4 bits, seconds to advance the clock = high 4 bits]
//   [u16 little-endian length][that many bytes of the request proto] ...
// A conversion that accepts a message must produce a value that converts back: invariants
// broken there abort.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "polytune/common/clock.h"
#include "polytune/coordinator/grpc_services.h"
#include "polytune/coordinator/proto_convert.h"
#include "polytune/rpc/metrics_convert.h"
#include "worker_convert.h"

namespace {
using namespace polytune;
using namespace polytune::coordinator;

const std::string& ArtifactDir() {
  static const std::string* dir = [] {
    char t[] = "/tmp/polytune-fuzz-rpc-XXXXXX";
    return new std::string(::mkdtemp(t));
  }();
  return *dir;
}

template <typename Request>
bool Parse(const std::string& bytes, Request* req) {
  return req->ParseFromString(bytes);
}
// A message the conversion accepts must convert back and be accepted again.
template <typename Proto, typename From, typename To>
void RoundTrip(const std::string& bytes, From from_proto, To to_proto) {
  Proto p;
  if (!Parse(bytes, &p)) return;
  auto domain = from_proto(p);
  if (domain.ok() && !from_proto(to_proto(*domain)).ok()) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FakeClock clock;
  auto store = MakeInMemoryStore();
  JobManagerOptions options;
  options.heartbeat_timeout_micros = 3'000'000;
  JobManager jobs(store.get(), &clock, options);
  ArtifactStore artifacts(ArtifactDir());
  JobServiceImpl job_service(&jobs, store.get(), &artifacts);
  WorkerServiceImpl worker_service(&jobs, store.get(), &artifacts);
  size_t pos = 0;
  while (pos + 3 <= size) {
    const uint8_t selector = data[pos];
    const size_t len = std::min<size_t>(data[pos + 1] | (size_t{data[pos + 2]} << 8), size - pos - 3);
    const std::string bytes(reinterpret_cast<const char*>(data + pos + 3), len);
    pos += 3 + len;
    clock.AdvanceSeconds(selector >> 4);
    (void)jobs.Tick();
    switch (selector & 15) {
#define POLYTUNE_CALL(N, service, Method)                               \
  case N: {                                                             \
    v1::Method##Request req;                                            \
    v1::Method##Response resp;                                          \
    if (Parse(bytes, &req)) (void)service.Method(nullptr, &req, &resp); \
    break;                                                              \
  }
      POLYTUNE_CALL(0, job_service, SubmitJob)
      POLYTUNE_CALL(1, job_service, GetJob)
      POLYTUNE_CALL(2, job_service, GetMetrics)
      POLYTUNE_CALL(3, job_service, GetLogs)
      POLYTUNE_CALL(4, job_service, ListJobs)
      POLYTUNE_CALL(5, job_service, CancelJob)
      POLYTUNE_CALL(6, job_service, ListWorkers)
      POLYTUNE_CALL(7, job_service, DrainWorker)
      POLYTUNE_CALL(8, job_service, UndrainWorker)
      POLYTUNE_CALL(9, worker_service, Register)
      POLYTUNE_CALL(10, worker_service, Heartbeat)
      POLYTUNE_CALL(11, worker_service, ReportMetrics)
      POLYTUNE_CALL(12, worker_service, ReportLogs)
#undef POLYTUNE_CALL
      case 13: {  // the worker's side of a heartbeat reply
        v1::HeartbeatResponse resp;
        if (Parse(bytes, &resp)) (void)worker::FromProto(resp);
        break;
      }
      case 14:  // a stored or listed job read back
        RoundTrip<v1::Job>(
            bytes, [](const v1::Job& p) { return FromProto(p); }, [](const Job& j) { return ToProto(j); });
        break;
      default:
        RoundTrip<v1::MetricsRecord>(
            bytes, [](const v1::MetricsRecord& p) { return rpc::FromProto(p); },
            [](const MetricsRecord& r) { return rpc::ToProto(r); });
        break;
    }
  }
  return 0;
}
