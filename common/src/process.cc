#include "polytune/common/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace polytune {
namespace {

ExitStatus FromWaitStatus(int status) {
  ExitStatus s;
  if (WIFSIGNALED(status)) {
    s.signaled = true;
    s.signal = WTERMSIG(status);
  } else {
    s.code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  }
  return s;
}

}  // namespace

std::string ExitStatus::Describe() const {
  if (signaled) return absl::StrCat("was killed by signal ", signal, " (", ::strsignal(signal), ")");
  return absl::StrCat("exited with code ", code);
}

absl::StatusOr<pid_t> SpawnProcess(const SpawnOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("SpawnProcess: empty argv");
  // Everything the child needs is prepared before fork: only async-signal-safe calls after it.
  std::vector<std::string> args = options.argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  int out_fd = -1;
  if (!options.output_path.empty()) {
    out_fd = ::open(options.output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd < 0)
      return absl::InternalError(absl::StrCat("cannot open ", options.output_path, ": ", std::strerror(errno)));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    if (out_fd >= 0) ::close(out_fd);
    return absl::ResourceExhaustedError(absl::StrCat("fork failed: ", std::strerror(err)));
  }
  if (pid == 0) {
    if (options.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before the signal was armed
    }
    if (options.own_process_group) ::setpgid(0, 0);
    if (out_fd >= 0) {
      ::dup2(out_fd, 1);
      ::dup2(out_fd, 2);
    }
    ::execv(cargs[0], cargs.data());
    const char msg[] = "cannot exec the child process\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
    ::_exit(127);
  }
  // Also set from the parent, so a signal sent right after spawning reaches the group.
  if (options.own_process_group) ::setpgid(pid, pid);
  if (out_fd >= 0) ::close(out_fd);
  return pid;
}

std::optional<ExitStatus> TryReap(pid_t pid) {
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == pid) return FromWaitStatus(status);
  if (r < 0 && errno == ECHILD) return ExitStatus{true, 0, SIGKILL};  // reaped elsewhere: gone
  return std::nullopt;
}

void SignalProcessGroup(pid_t pid, int sig) {
  if (pid <= 0) return;
  if (::kill(-pid, sig) != 0) ::kill(pid, sig);
}

ExitStatus TerminateAndReap(pid_t pid, int64_t grace_micros) {
  SignalProcessGroup(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(grace_micros);
  bool killed = false;
  for (;;) {
    if (auto s = TryReap(pid)) return *s;
    if (!killed && std::chrono::steady_clock::now() >= deadline) {
      SignalProcessGroup(pid, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace polytune
