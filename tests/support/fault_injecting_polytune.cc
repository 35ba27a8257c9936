// `polytune` with fault injection, for tests only: a rank whose index is
// $POLYTUNE_TEST_KILL_RANK SIGKILLs itself before optimizer step $POLYTUNE_TEST_KILL_AT_STEP.
// The real `polytune` has no such code path; this binary installs the trainer's step seam.
#include <signal.h>

#include <cstdlib>

#include "commands.h"

int main(int argc, char** argv) {
  const char* rank = std::getenv("POLYTUNE_TEST_KILL_RANK");
  const char* step = std::getenv("POLYTUNE_TEST_KILL_AT_STEP");
  if (rank && step) {
    const int kill_rank = std::atoi(rank);
    const int64_t kill_step = std::atoll(step);
    polytune::cli::SetTrainingStepHook([kill_rank, kill_step](int r, int64_t s) {
      if (r == kill_rank && s == kill_step) ::raise(SIGKILL);
    });
  }
  return polytune::cli::Main(argc, argv);
}
