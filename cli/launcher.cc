#include "launcher.h"

#include <signal.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "polytune/common/net_util.h"
#include "polytune/common/process.h"

namespace polytune::cli {
namespace {

volatile sig_atomic_t g_interrupted = 0;
void OnSignal(int) { g_interrupted = 1; }

}  // namespace

int PickFreePort() {
  const int port = PickFreeLoopbackPort();
  return port > 0 ? port : 29500;
}

absl::Status RunLocalRanks(const std::string& executable, const std::vector<std::string>& args, int nproc,
                           int grace_seconds) {
  const int port = PickFreePort();
  std::vector<pid_t> pids(nproc, -1);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  struct sigaction old_int, old_term;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  auto signal_all = [&](int sig) {
    for (pid_t p : pids)
      if (p > 0) SignalProcessGroup(p, sig);
  };
  for (int r = 0; r < nproc; ++r) {
    SpawnOptions so;
    so.argv = {executable};
    so.argv.insert(so.argv.end(), args.begin(), args.end());
    for (const std::string& s :
         {std::string("--rank"), std::to_string(r), std::string("--world-size"), std::to_string(nproc),
          std::string("--master-addr"), std::string("127.0.0.1"), std::string("--master-port"), std::to_string(port),
          std::string("--local-rank"), std::to_string(r)})
      so.argv.push_back(s);
    // Ranks stay in the launcher's process group, so a terminal's Ctrl-C reaches them too.
    so.own_process_group = false;
    auto pid = SpawnProcess(so);
    if (!pid.ok()) {
      signal_all(SIGKILL);
      for (pid_t p : pids)
        if (p > 0) TerminateAndReap(p, 0);
      return pid.status();
    }
    pids[r] = *pid;
  }
  int alive = nproc;
  std::string failure;
  auto deadline = std::chrono::steady_clock::time_point::max();
  bool killed = false;
  while (alive > 0) {
    bool reaped = false;
    for (int r = 0; r < nproc; ++r) {
      if (pids[r] <= 0) continue;
      std::optional<ExitStatus> status = TryReap(pids[r]);
      if (!status) continue;
      pids[r] = -1;
      --alive;
      reaped = true;
      if (!status->Success() && failure.empty()) {
        failure = absl::StrCat("rank ", r, " ", status->Describe(), "; stopping the other ranks");
        signal_all(SIGTERM);
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_seconds);
      }
    }
    if (reaped) continue;
    if (g_interrupted && failure.empty()) {
      failure = "interrupted; stopped all ranks";
      signal_all(SIGTERM);
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_seconds);
    }
    if (!killed && std::chrono::steady_clock::now() > deadline) {
      signal_all(SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (!failure.empty()) return absl::AbortedError(failure);
  return absl::OkStatus();
}

}  // namespace polytune::cli
