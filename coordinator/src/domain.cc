#include "polytune/coordinator/domain.h"

namespace polytune::coordinator {

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kPending:
      return "PENDING";
    case JobState::kScheduled:
      return "SCHEDULED";
    case JobState::kRunning:
      return "RUNNING";
    case JobState::kSucceeded:
      return "SUCCEEDED";
    case JobState::kFailed:
      return "FAILED";
    case JobState::kCancelled:
      return "CANCELLED";
  }
  return "?";
}

bool IsTerminal(JobState s) { return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled; }

bool IsAllowedTransition(JobState from, JobState to) {
  if (IsTerminal(from)) return false;
  switch (to) {
    case JobState::kPending:
      return from == JobState::kScheduled || from == JobState::kRunning;
    case JobState::kScheduled:
      return from == JobState::kPending;
    case JobState::kRunning:
      return from == JobState::kScheduled;
    case JobState::kSucceeded:
      return from == JobState::kRunning;
    case JobState::kFailed:
    case JobState::kCancelled:
      return true;
  }
  return false;
}

}  // namespace polytune::coordinator
