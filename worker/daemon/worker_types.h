// The worker daemon's domain: what it tells the coordinator and what it is told, with no
// proto types (those are converted in worker_convert.cc, at the gRPC edge).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "polytune/common/rank_types.h"

namespace polytune::worker {

struct DeviceSlot {
  std::string kind;  // "cpu" or "cuda"
  int32_t index = 0;
  int64_t memory_bytes = 0;  // 0 for CPU slots
};

struct Registration {
  std::string worker_id;    // stable name (--name)
  std::string incarnation;  // random per daemon start
  std::string address;      // host other ranks reach this worker's rank 0 at
  std::vector<DeviceSlot> devices;
  int32_t rendezvous_port_first = 29600;  // ports kept for rank 0 stores placed here
  int32_t rendezvous_port_count = 100;
};

// Ranks as the coordinator assigns them and as the worker reports them: the shared types.
using RankAssignment = polytune::RankAssignment;
using RankReport = polytune::RankReport;

// A heartbeat's answer.
struct Orders {
  std::vector<RankAssignment> start;
  std::vector<std::string> cancel_jobs;
  std::vector<std::string> preempt_jobs;  // checkpoint and stop
};

}  // namespace polytune::worker
