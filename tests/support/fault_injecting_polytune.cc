// `polytune` with fault injection, for tests only. The real `polytune` has no such code path;
// this binary installs the trainer's step seam:
// - $POLYTUNE_TEST_KILL_RANK and $POLYTUNE_TEST_KILL_AT_STEP: that rank SIGKILLs itself before
//   that optimizer step.
// - $POLYTUNE_TEST_CRASH_FILE: while that file exists and holds "RANK STEP", that rank of every
//   run SIGKILLs itself before that step (worker daemons pass the variable on to their ranks,
//   so a test arms and disarms crashes across a whole cluster).
#include <signal.h>

#include <cstdlib>
#include <fstream>

#include "commands.h"

int main(int argc, char** argv) {
  const char* rank = std::getenv("POLYTUNE_TEST_KILL_RANK");
  const char* step = std::getenv("POLYTUNE_TEST_KILL_AT_STEP");
  const char* crash_file = std::getenv("POLYTUNE_TEST_CRASH_FILE");
  const int kill_rank = rank ? std::atoi(rank) : -1;
  const int64_t kill_step = step ? std::atoll(step) : -1;
  const std::string armed = crash_file ? crash_file : "";
  if ((rank && step) || !armed.empty()) {
    polytune::cli::SetTrainingStepHook([kill_rank, kill_step, armed](int r, int64_t s) {
      if (r == kill_rank && s == kill_step) ::raise(SIGKILL);
      if (armed.empty()) return;
      std::ifstream in(armed);
      int crash_rank = -1;
      int64_t crash_step = -1;
      if (in >> crash_rank >> crash_step && r == crash_rank && s == crash_step) ::raise(SIGKILL);
    });
  }
  return polytune::cli::Main(argc, argv);
}
