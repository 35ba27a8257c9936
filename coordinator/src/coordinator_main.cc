// polytune-coordinator --listen HOST:PORT --data-dir DIR [--heartbeat-timeout 10s]
//   [--auth-file FILE] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--insecure]
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
#include <tuple>

#include "polytune/common/build_info.h"
#include "polytune/common/clock.h"
#include "polytune/common/net_util.h"
#include "polytune/coordinator/coordinator_metrics.h"
#include "polytune/coordinator/grpc_services.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/grpc_metrics.h"
#include "polytune/rpc/security.h"
#include "polytune/telemetry/telemetry.h"

namespace {
std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
void OnSignal(int) { g_stop = true; }
void OnHangup(int) { g_reload = true; }

bool IsLoopback(const std::string& host_port) {
  const std::string host = host_port.substr(0, host_port.rfind(':'));
  return host.rfind("127.", 0) == 0 || host == "localhost" || host == "[::1]";
}

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
  std::string listen = "127.0.0.1:7070", data_dir, timeout = "10s";
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
  std::string auth_file, tls_cert, tls_key, tls_client_ca, health_listen;
  bool insecure = false;
  app.add_option("--auth-file", auth_file,
                 "YAML of principals {name, role, token_sha256} (`polytune auth token` makes entries); reloaded on "
                 "SIGHUP. Without it every caller is an admin");
  app.add_option("--tls-cert", tls_cert, "PEM certificate chain: serve TLS");
  app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", tls_client_ca, "PEM CA: clients must present a certificate it signed (mTLS)");
  app.add_option("--health-listen", health_listen,
                 "HOST:PORT serving only grpc.health.v1, in plaintext and without tokens (kubelet probes)");
  app.add_flag("--insecure", insecure,
               "Allow a non-loopback --listen without --auth-file and TLS (anyone who reaches the port may do "
               "anything)");
  std::string max_artifact = "4G", max_storage = "0", min_free_disk = "1G";
  app.add_option("--max-artifact-bytes", max_artifact, "Largest dataset or checkpoint one upload may bring (e.g. 4G)")
      ->capture_default_str();
  app.add_option("--max-storage-bytes", max_storage, "Cap on all stored artifacts together (e.g. 500G; 0: no cap)")
      ->capture_default_str();
  app.add_option("--min-free-disk-bytes", min_free_disk,
                 "Free space kept on the --data-dir filesystem: uploads that would eat into it are refused")
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
  if (!IsLoopback(listen) && (auth_file.empty() || tls_cert.empty()) && !insecure) {
    std::fprintf(stderr,
                 "polytune-coordinator: error: refusing to serve %s without %s: anyone who reaches it could submit, "
                 "read and cancel every job and pose as a worker. Give --auth-file and --tls-cert/--tls-key, listen "
                 "on 127.0.0.1, or pass --insecure\n",
                 listen.c_str(),
                 auth_file.empty() && tls_cert.empty() ? "tokens and TLS"
                 : auth_file.empty()                   ? "tokens (--auth-file)"
                                                       : "TLS (--tls-cert)");
    return 2;
  }
  auto credentials = polytune::rpc::MakeServerCredentials(tls_cert, tls_key, tls_client_ca);
  if (!credentials.ok()) {
    std::fprintf(stderr, "polytune-coordinator: error: %s\n", std::string(credentials.status().message()).c_str());
    return 2;
  }
  std::unique_ptr<TokenRegistry> tokens;
  if (!auth_file.empty()) {
    auto loaded = TokenRegistry::Load(auth_file);
    if (!loaded.ok()) {
      std::fprintf(stderr, "polytune-coordinator: error: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    tokens = *std::move(loaded);
  }
  const Authorizer authorizer(tokens.get());
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
  ArtifactLimits limits;
  for (const auto& [flag, text, value] :
       {std::make_tuple("--max-artifact-bytes", max_artifact, &limits.max_artifact_bytes),
        std::make_tuple("--max-storage-bytes", max_storage, &limits.max_total_bytes),
        std::make_tuple("--min-free-disk-bytes", min_free_disk, &limits.min_free_disk_bytes)}) {
    auto parsed = ParseByteSize(text, flag);
    if (!parsed.ok()) {
      std::fprintf(stderr, "polytune-coordinator: error: %s\n", std::string(parsed.status().message()).c_str());
      return 2;
    }
    *value = *parsed;
  }
  ArtifactStore artifacts(data_dir + "/artifacts", limits);
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
  JobServiceImpl job_service(&jobs, timed_store.get(), &artifacts, &authorizer);
  // Workers heartbeat a few times per timeout, so one lost heartbeat never loses a worker.
  const int64_t heartbeat_ms = std::max<int64_t>(100, std::min<int64_t>(1000, timeout_micros / 1000 / 4));
  WorkerServiceImpl worker_service(&jobs, timed_store.get(), &artifacts, heartbeat_ms, metrics.get(), &authorizer);
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
  // The kubelet's gRPC probes speak neither TLS nor tokens: health alone, on its own port.
  std::unique_ptr<grpc::Server> health_server;
  if (!health_listen.empty()) {
    grpc::ServerBuilder hb;
    int health_port = 0;
    hb.AddListeningPort(health_listen, grpc::InsecureServerCredentials(), &health_port);
    health_server = hb.BuildAndStart();
    if (!health_server || health_port == 0) {
      std::fprintf(stderr, "polytune-coordinator: error: cannot listen on --health-listen %s\n", health_listen.c_str());
      return 1;
    }
  }
  // Reflection describes every RPC to whoever asks; with tokens on it is not served (gRPC's
  // reflection service cannot check a token).
  if (!tokens) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, *credentials, &port);
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
  signal(SIGHUP, OnHangup);
  std::fprintf(stderr, "polytune-coordinator %s: serving on %s:%d, state in %s\n", polytune::BuildDescription().c_str(),
               listen.substr(0, listen.rfind(':')).c_str(), port, data_dir.c_str());
  while (!g_stop) {
    if (g_reload.exchange(false) && tokens) {
      absl::Status reloaded = tokens->Reload();
      if (reloaded.ok()) {
        std::fprintf(stderr, "polytune-coordinator: reloaded %s (%zu principals)\n", auth_file.c_str(), tokens->size());
      } else {  // keeps the principals it had
        std::fprintf(stderr, "polytune-coordinator: error: %s; keeping the previous principals\n",
                     std::string(reloaded.message()).c_str());
      }
    }
    absl::Status tick = jobs.Tick();
    if (!tick.ok())  // the store refused a write; say so, and try again next tick
      std::fprintf(stderr, "polytune-coordinator: error: %s\n", std::string(tick.message()).c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (health_server) health_server->Shutdown(std::chrono::system_clock::now());
  return 0;
}
