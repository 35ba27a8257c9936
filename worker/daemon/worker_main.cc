// polytune-worker --coordinator HOST:PORT --work-dir DIR [--devices auto|cpu:N|cuda:0,1] [--name NAME]
//                 [--rendezvous-ports FIRST-LAST]
//
// Wiring only: flags, the health endpoint, and the agent's loop with real time. The daemon's
// behaviour lives in WorkerAgent and RankSupervisor.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "coordinator_client.h"
#include "devices.h"
#include "polytune/common/build_info.h"
#include "polytune/common/clock.h"
#include "polytune/common/net_util.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/security.h"
#include "polytune/telemetry/telemetry.h"
#include "process_launcher.h"
#include "rank_supervisor.h"
#include "result_uploader.h"
#include "worker_agent.h"
#include "worker_metrics.h"

namespace {
namespace fs = std::filesystem;
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

int Error(const std::string& message) {
  std::fprintf(stderr, "polytune-worker: error: %s\n", message.c_str());
  return 2;
}

std::string RandomHex(int n) {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(::getpid()));
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back("0123456789abcdef"[gen() % 16]);
  return s;
}

std::string DefaultPolytuneBin() {
  fs::path self = fs::read_symlink("/proc/self/exe").parent_path();
  for (const fs::path& c :
       {self / "polytune-engine", self / "../../cli/polytune-engine", self / "polytune", self / "../../cli/polytune"})
    if (fs::exists(c)) return fs::canonical(c).string();
  return "/usr/local/bin/polytune-engine";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace polytune::worker;
  std::string coordinator, work_dir, devices_flag = "auto", name, address, polytune_bin;
  CLI::App app{"polytune-worker: runs data-parallel training ranks for a polytune coordinator"};
  app.add_option("--coordinator", coordinator, "Coordinator HOST:PORT")->required();
  app.add_option("--work-dir", work_dir, "Folder for datasets, rank outputs and logs")->required();
  app.add_option("--devices", devices_flag, "auto, cpu:N or cuda:0,1")->capture_default_str();
  app.add_option("--name", name, "Worker name (default: the host name)");
  app.add_option("--address", address,
                 "Host other ranks reach this worker at (default: 127.0.0.1 for a local coordinator, else the host "
                 "name)");
  app.add_option("--polytune-bin", polytune_bin, "The polytune binary (default: next to this one)");
  std::string ports = "29600-29699";
  app.add_option("--rendezvous-ports", ports,
                 "FIRST-LAST: ports on this host kept for the rendezvous stores of ranks 0 placed here")
      ->capture_default_str();
  std::string metrics_listen = "0.0.0.0:9465";
  app.add_option("--metrics-listen", metrics_listen,
                 "HOST:PORT serving Prometheus /metrics (\"\" turns it off; port 0: any free port)")
      ->capture_default_str();
  std::string listen = "0.0.0.0:0";
  app.add_option("--listen", listen,
                 "HOST:PORT for the worker's health and reflection endpoint (port 0: any free port)")
      ->capture_default_str();
  std::string token_file, tls_ca, tls_cert, tls_key;
  app.add_option("--token-file", token_file, "File holding this worker's bearer token (role worker)");
  app.add_option("--tls-ca", tls_ca, "PEM CA that signed the coordinator's certificate: speak TLS");
  app.add_option("--tls-cert", tls_cert, "PEM client certificate (when the coordinator requires mTLS)");
  app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert");
  std::vector<std::string> model_roots;
  app.add_option("--model-root", model_roots,
                 "Folder jobs may load models from (repeatable); a model.path outside every root is refused")
      ->check(CLI::ExistingDirectory);
  int preempt_grace = 120;
  app.add_option("--preempt-grace", preempt_grace,
                 "Seconds a rank asked to checkpoint and stop (drain, preemption, SIGTERM) gets before SIGKILL; "
                 "keep Kubernetes' terminationGracePeriodSeconds above this plus 30")
      ->capture_default_str();
  app.set_version_flag("--version", std::string("polytune-worker ") + polytune::BuildDescription());
  CLI11_PARSE(app, argc, argv);

  for (const auto& [flag, value] :
       {std::make_pair("--listen", listen), std::make_pair("--metrics-listen", metrics_listen)}) {
    if (value.empty() && std::string(flag) == "--metrics-listen") continue;
    auto hp = polytune::ParseHostPort(value, flag);
    if (!hp.ok()) return Error(std::string(hp.status().message()));
  }
  if (preempt_grace < 1 || preempt_grace > 3600)
    return Error("--preempt-grace must be between 1 and 3600 seconds, got " + std::to_string(preempt_grace));
  auto security = polytune::rpc::LoadClientSecurity(tls_ca, tls_cert, tls_key, "", token_file, false);
  if (!security.ok()) return Error(std::string(security.status().message()));
  polytune::rpc::SetClientSecurity(*security);
  Registration reg;
  {
    int first = 0, last = 0;
    char dash = 0;
    if (std::sscanf(ports.c_str(), "%d%c%d", &first, &dash, &last) != 3 || dash != '-' || first < 1 || last < first ||
        last > 65535)
      return Error("--rendezvous-ports '" + ports + "' is not FIRST-LAST within 1-65535");
    reg.rendezvous_port_first = first;
    reg.rendezvous_port_count = last - first + 1;
  }
  auto devices = ParseDevices(devices_flag, QueryCudaMemory());
  if (!devices.ok()) return Error(std::string(devices.status().message()));
  char host[HOST_NAME_MAX + 1] = {};
  ::gethostname(host, sizeof(host));
  reg.worker_id = name.empty() ? host : name;
  reg.incarnation = RandomHex(16);
  reg.address = !address.empty()                                                                ? address
                : (coordinator.rfind("127.", 0) == 0 || coordinator.rfind("localhost", 0) == 0) ? "127.0.0.1"
                                                                                                : host;
  reg.devices = *devices;
  std::error_code ec;
  fs::create_directories(work_dir, ec);
  if (ec) return Error("cannot create --work-dir " + work_dir + ": " + ec.message());

  SupervisorOptions so;
  so.worker_name = reg.worker_id;
  so.address = reg.address;
  // Rank specs live in the work dir, and relative paths in a spec resolve against it.
  so.work_dir = fs::absolute(work_dir).lexically_normal().string();
  so.polytune_bin = polytune_bin.empty() ? DefaultPolytuneBin() : polytune_bin;
  so.preempt_grace_micros = int64_t{preempt_grace} * 1'000'000;
  so.model_roots = model_roots;

  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  // grpc.health.v1 and server reflection, so probes and grpcurl can check the daemon.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  polytune::rpc::ConfigureServer(builder);
  std::unique_ptr<grpc::Server> health = builder.BuildAndStart();
  if (!health || port == 0) return Error("cannot listen on " + listen);
  std::fprintf(stderr, "polytune-worker %s: health endpoint on port %d\n", polytune::BuildDescription().c_str(), port);

  WorkerMetrics metrics(reg.devices);
  auto exposer = polytune::telemetry::StartMetricsServer(
      metrics_listen, {metrics.registry(), polytune::telemetry::MakeProcessCollector()});
  if (!exposer.ok()) return Error(std::string(exposer.status().message()));
  if (*exposer)
    std::fprintf(stderr, "polytune-worker: metrics on http://%s:%d/metrics\n",
                 metrics_listen.substr(0, metrics_listen.rfind(':')).c_str(),
                 polytune::telemetry::ListeningPort(**exposer));

  const polytune::Clock* clock = polytune::SystemClock::Default();
  std::unique_ptr<CoordinatorClient> client = MakeGrpcCoordinatorClient(coordinator);
  auto uploader = std::make_unique<ResultUploader>(client.get(), &metrics);
  SupervisorDeps deps;
  deps.clock = clock;
  deps.launcher = SystemProcessLauncher();
  deps.forwarder = uploader.get();
  deps.download = [&client](const std::string& sha) { return client->Download(sha); };
  deps.port_is_free = [](int p) { return polytune::PortIsFree(p); };
  deps.telemetry = &metrics;
  RankSupervisor ranks(so, deps);
  AgentOptions ao;
  ao.registration = reg;
  ao.shutdown_timeout_micros = (int64_t{preempt_grace} + 30) * 1'000'000;
  WorkerAgent agent(ao, clock, client.get(), &ranks, &metrics);
  const bool cuda = !reg.devices.empty() && reg.devices[0].kind == "cuda";
  int64_t next_gpu_poll = 0;
  while (!g_stop) {
    if (cuda && clock->SteadyNowMicros() >= next_gpu_poll) {  // nvidia-smi is slow: every 10 s
      std::map<int, int64_t> used;
      const std::vector<int64_t> all = QueryCudaMemoryUsed();
      for (const auto& d : reg.devices)
        if (d.index < static_cast<int>(all.size())) used[d.index] = all[d.index];
      metrics.SetGpuMemoryUsed(used);
      next_gpu_poll = clock->SteadyNowMicros() + 10'000'000;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(agent.RunOnce()));
  }
  agent.BeginShutdown();
  while (!agent.Stopped()) std::this_thread::sleep_for(std::chrono::microseconds(agent.RunOnce()));
  uploader.reset();
  health->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}
