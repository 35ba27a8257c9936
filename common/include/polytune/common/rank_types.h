// One rank of a job, as the coordinator assigns it and as the worker that runs it reports it.
// Shared by both sides of the WorkerService protocol (converted to and from proto in
// polytune/rpc/rank_convert.h), so the two never drift apart.
#pragma once

#include <cstdint>
#include <string>

namespace polytune {

struct RankAssignment {
  std::string job_id;
  int32_t rank = 0;
  int32_t world_size = 1;
  std::string master_addr;  // rank 0's host
  int32_t master_port = 0;  // rank 0's store port
  std::string spec_yaml;    // canonical job spec (polytune::spec::ToCanonicalYaml)
  int32_t attempt = 0;      // the job's placement number, echoed in reports
  // The verified checkpoint archive to resume from and its step (empty sha: from step 0).
  std::string resume_sha256;
  int64_t resume_step = 0;
};

struct RankReport {
  enum class Phase { kStarting, kRunning, kExited };
  std::string job_id;
  int32_t rank = 0;
  Phase phase = Phase::kStarting;
  int32_t exit_code = 0;  // when exited: the code, or 128 + signal
  std::string message;    // when it failed: its last error line
  int32_t attempt = 0;
  bool rendezvous_port_busy = false;  // rank 0 did not start: its port was taken
};

}  // namespace polytune
