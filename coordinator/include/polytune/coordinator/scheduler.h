// Gang-scheduling policy: a pure function of domain snapshots (no I/O, no clock, no gRPC).
//
// Jobs are considered by priority (higher first), then submission order. A job starts only
// when all its ranks fit at once (one free device per rank). A job that does not fit holds
// the free devices it would use (a reservation), so a stream of smaller jobs behind it can
// never take them and delay it: no starvation. A job larger than the whole cluster never
// holds anything (it could never run); it waits with that reason.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "polytune/coordinator/domain.h"

namespace polytune::coordinator {

struct WorkerCapacity {
  std::string id;
  int32_t total = 0;  // devices
  int32_t free = 0;   // devices not used by running or scheduled ranks
};

struct Placement {
  std::string job_id;
  std::vector<std::string> rank_workers;  // rank r runs on rank_workers[r]
};

struct ScheduleDecision {
  std::vector<Placement> placements;
  // (job id, why it still waits), in scheduling order. A vector, not a map: with 10,000 queued
  // jobs the map's inserts were a good part of a decision.
  std::vector<std::pair<std::string, std::string>> waiting;
  // The reason `job_id` waits ("" when it does not).
  const std::string& WaitingReason(const std::string& job_id) const;
};

ScheduleDecision DecideSchedule(const std::vector<Job>& pending, const std::vector<WorkerCapacity>& workers);

// A placed job as priority preemption sees it.
struct PlacedJob {
  std::string id;
  int32_t priority = 0;
  int64_t sequence = 0;
  bool preemptible = false;
  bool stopping = false;  // already asked to checkpoint and stop
  int32_t devices = 0;    // its ranks on schedulable workers (devices it gives back)
};

// Priority preemption policy: the placed jobs `waiting` should stop so that it fits, given
// `free` devices now. Only preemptible jobs of lower priority are candidates. Devices of jobs
// already stopping count as coming free, so a second call asks for nothing more. Picks the
// lowest priorities first (then the youngest: it loses the least work) and then drops any
// pick the others cover, so the fewest jobs stop. Empty when nothing is needed or nothing
// suffices (then no job is stopped in vain).
std::vector<std::string> ChoosePreemptions(const Job& waiting, int32_t free, const std::vector<PlacedJob>& placed);

}  // namespace polytune::coordinator
