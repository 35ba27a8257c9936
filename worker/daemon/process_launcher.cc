#include "process_launcher.h"

namespace polytune::worker {
namespace {

class SystemLauncher final : public ProcessLauncher {
 public:
  absl::StatusOr<pid_t> Spawn(const SpawnOptions& options) override { return SpawnProcess(options); }
  std::optional<ExitStatus> TryReap(pid_t pid) override { return polytune::TryReap(pid); }
  void Signal(pid_t pid, int sig) override { SignalProcessGroup(pid, sig); }
};

}  // namespace

ProcessLauncher* SystemProcessLauncher() {
  static SystemLauncher launcher;
  return &launcher;
}

}  // namespace polytune::worker
