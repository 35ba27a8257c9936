// polytune-coordinator --listen HOST:PORT --data-dir DIR [--heartbeat-timeout 10s]
#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "polytune/common/build_info.h"
#include "polytune/common/clock.h"
#include "polytune/common/net_util.h"
#include "polytune/coordinator/coordinator_metrics.h"
#include "polytune/coordinator/grpc_services.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/grpc_metrics.h"
#include "polytune/telemetry/telemetry.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// "10s", "500ms", "2m" or plain seconds.
bool ParseDuration(const std::string& s, int64_t* micros) {
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    std::string unit = s.substr(used);
    double scale = unit.empty() || unit == "s" ? 1e6 : unit == "ms" ? 1e3 : unit == "m" ? 60e6 : -1;
    if (scale < 0 || v <= 0) return false;
    *micros = static_cast<int64_t>(v * scale);
    return true;
  } catch (...) {
    return false;
  }
}
}  // namespace

int main(int argc, char** argv) {
  using namespace polytune::coordinator;
  CLI::App app{"polytune-coordinator: queues fine-tuning jobs and gang-schedules them onto workers"};
  std::string listen = "0.0.0.0:7070", data_dir, timeout = "10s";
  app.add_option("--listen", listen, "HOST:PORT to serve gRPC on")->capture_default_str();
  app.add_option("--data-dir", data_dir, "Folder for the SQLite database and artifacts")->required();
  app.add_option("--heartbeat-timeout", timeout, "Silence after which a worker is lost (e.g. 10s, 500ms)")
      ->capture_default_str();
  std::string metrics_listen = "0.0.0.0:9464", job_grace = "60s", restart_backoff = "10s";
  app.add_option("--restart-backoff", restart_backoff,
                 "Wait before a job's first restart after a failure; doubles per restart, at most 5 min")
      ->capture_default_str();
  app.add_option("--metrics-listen", metrics_listen,
                 "HOST:PORT serving Prometheus /metrics (\"\" turns it off; port 0: any free port)")
      ->capture_default_str();
  app.add_option("--job-metrics-grace", job_grace,
                 "How long a finished job's series stay on /metrics so its last values are scraped")
      ->capture_default_str();
  app.set_version_flag("--version", std::string("polytune-coordinator ") + polytune::BuildDescription());
  CLI11_PARSE(app, argc, argv);
  int64_t timeout_micros = 0;
  if (!ParseDuration(timeout, &timeout_micros)) {
    std::fprintf(stderr, "polytune-coordinator: error: --heartbeat-timeout '%s' is not a duration like 10s or 500ms\n",
                 timeout.c_str());
    return 2;
  }
  for (const auto& [flag, value] :
       {std::make_pair("--listen", listen), std::make_pair("--metrics-listen", metrics_listen)}) {
    if (value.empty() && std::string(flag) == "--metrics-listen") continue;
    auto hp = polytune::ParseHostPort(value, flag);
    if (!hp.ok()) {
      std::fprintf(stderr, "polytune-coordinator: error: %s\n", std::string(hp.status().message()).c_str());
      return 2;
    }
  }
  int64_t backoff_micros = 0;
  if (!ParseDuration(restart_backoff, &backoff_micros)) {
    std::fprintf(stderr, "polytune-coordinator: error: --restart-backoff '%s' is not a duration like 10s or 500ms\n",
                 restart_backoff.c_str());
    return 2;
  }
  int64_t grace_micros = 0;
  if (!ParseDuration(job_grace, &grace_micros)) {
    std::fprintf(stderr, "polytune-coordinator: error: --job-metrics-grace '%s' is not a duration like 60s\n",
                 job_grace.c_str());
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(data_dir + "/artifacts", ec);
  if (ec) {
    std::fprintf(stderr, "polytune-coordinator: error: cannot create %s: %s\n", data_dir.c_str(), ec.message().c_str());
    return 1;
  }
  // One coordinator per data dir: a second one would hand out the same job ids.
  const std::string lock_path = data_dir + "/coordinator.lock";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    char holder[32] = {};
    if (lock_fd >= 0) (void)!::pread(lock_fd, holder, sizeof(holder) - 1, 0);
    std::fprintf(stderr,
                 "polytune-coordinator: error: --data-dir %s is in use by another polytune-coordinator (pid %s); "
                 "stop it first or give this one its own --data-dir\n",
                 data_dir.c_str(), holder[0] ? holder : "unknown");
    return 1;
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  (void)!::ftruncate(lock_fd, 0);
  (void)!::pwrite(lock_fd, pid.data(), pid.size(), 0);  // the lock is held until exit
  auto store = OpenSqliteStore(data_dir + "/coordinator.db");
  if (!store.ok()) {
    std::fprintf(stderr, "polytune-coordinator: error: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  ArtifactStore artifacts(data_dir + "/artifacts");
  const polytune::Clock* clock = polytune::SystemClock::Default();
  CoordinatorMetricsOptions mo;
  mo.job_grace_micros = grace_micros;
  auto metrics = std::make_shared<CoordinatorMetrics>(clock, mo);
  std::unique_ptr<Store> timed_store = MakeTimedStore(store->get(), metrics.get());
  JobManagerOptions jo;
  jo.heartbeat_timeout_micros = timeout_micros;
  jo.restart_backoff_micros = backoff_micros;
  JobManager jobs(timed_store.get(), clock, jo);
  jobs.SetObserver(metrics.get());
  metrics->SetClusterSource([&jobs] { return jobs.Workers(); }, [&jobs] { return jobs.FreeDevices(); });
  absl::Status st = jobs.Recover();
  if (!st.ok()) {
    std::fprintf(stderr, "polytune-coordinator: error: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  JobServiceImpl job_service(&jobs, timed_store.get(), &artifacts);
  // Workers heartbeat a few times per timeout, so one lost heartbeat never loses a worker.
  const int64_t heartbeat_ms = std::max<int64_t>(100, std::min<int64_t>(1000, timeout_micros / 1000 / 4));
  WorkerServiceImpl worker_service(&jobs, timed_store.get(), &artifacts, heartbeat_ms, metrics.get());
  auto exposer = polytune::telemetry::StartMetricsServer(
      metrics_listen, {metrics, metrics->shared_registry(), polytune::telemetry::MakeProcessCollector()});
  if (!exposer.ok()) {
    std::fprintf(stderr, "polytune-coordinator: error: %s\n", std::string(exposer.status().message()).c_str());
    return 1;
  }
  if (*exposer)
    std::fprintf(stderr, "polytune-coordinator: metrics on http://%s:%d/metrics\n",
                 metrics_listen.substr(0, metrics_listen.rfind(':')).c_str(),
                 polytune::telemetry::ListeningPort(**exposer));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  polytune::rpc::ConfigureServer(builder);
  builder.experimental().SetInterceptorCreators(polytune::rpc::MakeGrpcMetricsInterceptors(metrics->registry()));
  builder.RegisterService(&job_service);
  builder.RegisterService(&worker_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "polytune-coordinator: error: cannot listen on %s (in use, or not HOST:PORT?)\n",
                 listen.c_str());
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  std::fprintf(stderr, "polytune-coordinator %s: serving on %s:%d, state in %s\n", polytune::BuildDescription().c_str(),
               listen.substr(0, listen.rfind(':')).c_str(), port, data_dir.c_str());
  while (!g_stop) {
    absl::Status tick = jobs.Tick();
    if (!tick.ok())  // the store refused a write; say so, and try again next tick
      std::fprintf(stderr, "polytune-coordinator: error: %s\n", std::string(tick.message()).c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}
