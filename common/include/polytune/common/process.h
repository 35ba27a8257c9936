// Child processes: spawned in their own process group (so stopping one stops everything it
// started), their output appended to a file or inherited, reaped without blocking, and
// terminated with SIGTERM then SIGKILL after a grace period. Used by `polytune train
// --nproc N` and by the worker daemon; both supervise ranks the same way.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace polytune {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the executable's path
  std::string output_path;        // stdout and stderr appended here; empty: inherited
  bool own_process_group = true;  // the child leads a new process group
  // The kernel SIGKILLs the child when the spawning thread's process dies (PR_SET_PDEATHSIG),
  // so a supervisor killed with -9 leaves no orphan behind. Spawn from a thread that lives as
  // long as the process.
  bool die_with_parent = false;
};

// How a child ended.
struct ExitStatus {
  bool signaled = false;
  int code = 0;    // exit code when !signaled
  int signal = 0;  // terminating signal when signaled
  // The shell's convention: the exit code, or 128 + signal.
  int ShellCode() const { return signaled ? 128 + signal : code; }
  bool Success() const { return !signaled && code == 0; }
  // "exited with code 3" / "was killed by signal 9 (Killed)".
  std::string Describe() const;
};

absl::StatusOr<pid_t> SpawnProcess(const SpawnOptions& options);

// The child's exit status if it has exited (reaping it), nullopt while it runs.
std::optional<ExitStatus> TryReap(pid_t pid);

// Sends `sig` to the child's process group (or to the child alone when it leads none).
void SignalProcessGroup(pid_t pid, int sig);

// SIGTERM to the group, then SIGKILL if it is still alive after `grace_micros`; blocks until
// the child is reaped. For shutdown paths only: supervisors escalate from their own loop.
ExitStatus TerminateAndReap(pid_t pid, int64_t grace_micros);

}  // namespace polytune
