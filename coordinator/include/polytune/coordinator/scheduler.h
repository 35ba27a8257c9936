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
  std::map<std::string, std::string> waiting;  // job id -> why it still waits
};

ScheduleDecision DecideSchedule(const std::vector<Job>& pending, const std::vector<WorkerCapacity>& workers);

}  // namespace polytune::coordinator
