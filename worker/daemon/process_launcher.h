// Starting, polling and signalling rank processes, behind an interface so the rank
// supervisor is tested with a fake (no processes, no sleeps).
#pragma once

#include <sys/types.h>

#include <optional>

#include "absl/status/statusor.h"
#include "polytune/common/process.h"

namespace polytune::worker {

class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;
  virtual absl::StatusOr<pid_t> Spawn(const SpawnOptions& options) = 0;
  virtual std::optional<ExitStatus> TryReap(pid_t pid) = 0;
  virtual void Signal(pid_t pid, int sig) = 0;  // to the process group
};

// Real processes (polytune/common/process.h).
ProcessLauncher* SystemProcessLauncher();

}  // namespace polytune::worker
