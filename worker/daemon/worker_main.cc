// polytune-worker --coordinator HOST:PORT --work-dir DIR [--devices auto|cpu:N|cuda:0,1] [--name NAME]
//                 [--rendezvous-ports FIRST-LAST]
#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "polytune/coordinator/grpc_config.h"
#include "worker_daemon.h"

namespace {
volatile bool g_stop = false;
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  polytune::worker::DaemonOptions o;
  CLI::App app{"polytune-worker: runs data-parallel training ranks for a polytune coordinator"};
  app.add_option("--coordinator", o.coordinator, "Coordinator HOST:PORT")->required();
  app.add_option("--work-dir", o.work_dir, "Folder for datasets, rank outputs and logs")->required();
  app.add_option("--devices", o.devices, "auto, cpu:N or cuda:0,1")->capture_default_str();
  app.add_option("--name", o.name, "Worker name (default: the host name)");
  app.add_option(
      "--address", o.address,
      "Host other ranks reach this worker at (default: 127.0.0.1 for a local coordinator, else the host name)");
  app.add_option("--polytune-bin", o.polytune_bin, "The polytune binary (default: next to this one)");
  std::string ports = "29600-29699";
  app.add_option("--rendezvous-ports", ports,
                 "FIRST-LAST: ports on this host kept for the rendezvous stores of ranks 0 placed here")
      ->capture_default_str();
  std::string listen = "0.0.0.0:0";
  app.add_option("--listen", listen,
                 "HOST:PORT for the worker's health and reflection endpoint (port 0: any free port)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  {
    int first = 0, last = 0;
    char dash = 0;
    if (std::sscanf(ports.c_str(), "%d%c%d", &first, &dash, &last) != 3 || dash != '-' || first < 1 || last < first ||
        last > 65535) {
      std::fprintf(stderr, "polytune-worker: error: --rendezvous-ports '%s' is not FIRST-LAST within 1-65535\n",
                   ports.c_str());
      return 2;
    }
    o.rendezvous_port_first = first;
    o.rendezvous_port_count = last - first + 1;
  }
  char host[HOST_NAME_MAX + 1] = {};
  ::gethostname(host, sizeof(host));
  if (o.name.empty()) o.name = host;
  if (o.address.empty())
    o.address = (o.coordinator.rfind("127.", 0) == 0 || o.coordinator.rfind("localhost", 0) == 0) ? "127.0.0.1" : host;
  if (o.polytune_bin.empty()) {
    namespace fs = std::filesystem;
    fs::path self = fs::read_symlink("/proc/self/exe").parent_path();
    for (const fs::path& c : {self / "polytune", self / "../../cli/polytune", self / "../cli/polytune"})
      if (fs::exists(c)) {
        o.polytune_bin = fs::canonical(c).string();
        break;
      }
    if (o.polytune_bin.empty()) o.polytune_bin = "/usr/local/bin/polytune";
  }
  std::filesystem::create_directories(o.work_dir);
  // Rank specs live in the work dir, and relative paths in a spec resolve against it.
  o.work_dir = std::filesystem::absolute(o.work_dir).lexically_normal().string();
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  // grpc.health.v1 and server reflection, so probes and grpcurl can check the daemon.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  polytune::coordinator::ConfigureServer(builder);
  std::unique_ptr<grpc::Server> health = builder.BuildAndStart();
  if (!health || port == 0) {
    std::fprintf(stderr, "polytune-worker: error: cannot listen on %s\n", listen.c_str());
    return 2;
  }
  std::fprintf(stderr, "polytune-worker: health endpoint on port %d\n", port);
  polytune::worker::WorkerDaemon daemon(o);
  absl::Status st = daemon.Run(&g_stop);
  health->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (!st.ok()) {
    std::fprintf(stderr, "polytune-worker: error: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  return 0;
}
