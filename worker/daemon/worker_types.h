// The worker daemon's domain: what it tells the coordinator and what it is told, with no
// proto types (those are converted in worker_convert.cc, at the gRPC edge).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

// One rank of a job the coordinator wants this worker to run.
struct RankAssignment {
  std::string job_id;
  int32_t rank = 0;
  int32_t world_size = 1;
  std::string master_addr;  // rank 0's host
  int32_t master_port = 0;  // rank 0's store port
  std::string spec_yaml;    // canonical job spec (polytune::spec::ToCanonicalYaml)
  int32_t attempt = 0;      // the job's placement number, echoed in reports
};

struct RankReport {
  enum class Phase { kRunning, kExited };
  std::string job_id;
  int32_t rank = 0;
  Phase phase = Phase::kRunning;
  int32_t exit_code = 0;  // when exited: the code, or 128 + signal
  std::string message;    // when it failed: its last error line
  int32_t attempt = 0;
  bool rendezvous_port_busy = false;  // rank 0 did not start: its port was taken
};

// A heartbeat's answer.
struct Orders {
  std::vector<RankAssignment> start;
  std::vector<std::string> cancel_jobs;
};

}  // namespace polytune::worker
