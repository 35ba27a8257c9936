// `polytune` with fault injection, for tests only. The real `polytune` has no such code path;
// this binary installs the trainer's step seam:
// - $POLYTUNE_TEST_KILL_RANK and $POLYTUNE_TEST_KILL_AT_STEP: that rank SIGKILLs itself before
//   that optimizer step.
// - $POLYTUNE_TEST_CRASH_FILE: while that file exists and holds "RANK STEP", that rank of every
//   run SIGKILLs itself before that step (worker daemons pass the variable on to their ranks,
//   so a test arms and disarms crashes across a whole cluster).
// - $POLYTUNE_TEST_PACE_FILE: while that file exists and holds a number N, every rank sleeps N
//   milliseconds before each step, so a test that must act while a job runs (preempting it)
//   does not race a job that finishes first on a fast machine.
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "commands.h"

int main(int argc, char** argv) {
  const char* rank = std::getenv("POLYTUNE_TEST_KILL_RANK");
  const char* step = std::getenv("POLYTUNE_TEST_KILL_AT_STEP");
  const char* crash_file = std::getenv("POLYTUNE_TEST_CRASH_FILE");
  const int kill_rank = rank ? std::atoi(rank) : -1;
  const int64_t kill_step = step ? std::atoll(step) : -1;
  const std::string armed = crash_file ? crash_file : "";
  const char* pace_file = std::getenv("POLYTUNE_TEST_PACE_FILE");
  const std::string pace = pace_file ? pace_file : "";
  if ((rank && step) || !armed.empty() || !pace.empty()) {
    polytune::cli::SetTrainingStepHook([kill_rank, kill_step, armed, pace](int r, int64_t s) {
      if (r == kill_rank && s == kill_step) ::raise(SIGKILL);
      if (!pace.empty()) {
        std::ifstream in(pace);
        int64_t milliseconds = 0;
        if (in >> milliseconds && milliseconds > 0)
          std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
      }
      if (armed.empty()) return;
      std::ifstream in(armed);
      int crash_rank = -1;
      int64_t crash_step = -1;
      if (in >> crash_rank >> crash_step && r == crash_rank && s == crash_step) ::raise(SIGKILL);
    });
  }
  return polytune::cli::Main(argc, argv);
}
