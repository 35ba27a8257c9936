#include "launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace polytune::cli {
namespace {

volatile sig_atomic_t g_interrupted = 0;
void OnSignal(int) { g_interrupted = 1; }

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return absl::StrCat("was killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  return "stopped";
}

}  // namespace

int PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 29500;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) port = ntohs(addr.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
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
  for (int r = 0; r < nproc; ++r) {
    std::vector<std::string> argv = {executable};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& s :
         {std::string("--rank"), std::to_string(r), std::string("--world-size"), std::to_string(nproc),
          std::string("--master-addr"), std::string("127.0.0.1"), std::string("--master-port"), std::to_string(port),
          std::string("--local-rank"), std::to_string(r)})
      argv.push_back(s);
    pid_t pid = ::fork();
    if (pid < 0) return absl::InternalError(absl::StrCat("fork failed: ", std::strerror(errno)));
    if (pid == 0) {
      std::vector<char*> cargs;
      for (auto& a : argv) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      ::execv(executable.c_str(), cargs.data());
      std::fprintf(stderr, "polytune: cannot exec %s: %s\n", executable.c_str(), std::strerror(errno));
      ::_exit(127);
    }
    pids[r] = pid;
  }
  int alive = nproc;
  std::string failure;
  auto kill_all = [&](int sig) {
    for (pid_t p : pids)
      if (p > 0) ::kill(p, sig);
  };
  auto deadline = std::chrono::steady_clock::time_point::max();
  bool killed = false;
  while (alive > 0) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (int r = 0; r < nproc; ++r) {
        if (pids[r] != pid) continue;
        pids[r] = -1;
        --alive;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && failure.empty()) {
          failure = absl::StrCat("rank ", r, " ", DescribeExit(status), "; stopping the other ranks");
          kill_all(SIGTERM);
          deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_seconds);
        }
      }
      continue;
    }
    if (g_interrupted && failure.empty()) {
      failure = "interrupted; stopped all ranks";
      kill_all(SIGTERM);
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_seconds);
    }
    if (!killed && std::chrono::steady_clock::now() > deadline) {
      kill_all(SIGKILL);
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
