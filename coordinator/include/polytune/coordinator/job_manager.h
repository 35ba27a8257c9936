// The coordinator's core: job lifecycle, worker liveness and gang placement, driven by
// calls from the gRPC layer (which only translates) and by Tick(). Time comes from an
// injected Clock, state persists through a Store after every change.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/common/clock.h"
#include "polytune/coordinator/domain.h"
#include "polytune/coordinator/store.h"
#include "polytune/coordinator/worker_registry.h"

namespace polytune::coordinator {

struct RankAssignment {
  std::string job_id;
  int32_t rank = 0;
  int32_t world_size = 1;
  std::string master_addr;
  int32_t master_port = 0;
  std::string spec_yaml;
  int32_t attempt = 0;
};

struct RankReport {
  enum class Phase { kStarting, kRunning, kExited };
  std::string job_id;
  int32_t rank = 0;
  Phase phase = Phase::kStarting;
  int32_t exit_code = 0;
  std::string message;
  int32_t attempt = 0;
  bool rendezvous_port_busy = false;
};

struct HeartbeatReply {
  std::vector<RankAssignment> start;
  std::vector<std::string> cancel_jobs;
};

struct JobManagerOptions {
  int64_t heartbeat_timeout_micros = 10'000'000;
  // A rendezvous port a worker found taken by another process is not handed out again on that
  // host for this long.
  int64_t busy_port_quarantine_micros = 60'000'000;
};

class JobManager {
 public:
  JobManager(Store* store, const Clock* clock, JobManagerOptions options = {});

  // Reloads jobs from the store (after a coordinator restart).
  absl::Status Recover();

  absl::StatusOr<Job> Submit(const std::string& name, int32_t priority, int32_t world_size,
                             const std::string& spec_yaml);
  absl::StatusOr<Job> Cancel(const std::string& id);
  absl::StatusOr<Job> Get(const std::string& id) const;
  std::vector<Job> List() const;

  // Returns the ids of jobs failed because the registration superseded a running worker.
  absl::Status RegisterWorker(Worker worker);
  absl::StatusOr<HeartbeatReply> Heartbeat(const std::string& worker_id, const std::string& incarnation,
                                           const std::vector<RankReport>& ranks);
  std::vector<Worker> Workers() const { return registry_.Snapshot(); }
  // Free devices per alive worker (devices minus ranks of scheduled or running jobs).
  std::map<std::string, int32_t> FreeDevices() const;

  // Declares silent workers lost (failing their jobs) and places pending jobs.
  void Tick();

 private:
  void TransitionLocked(Job& job, JobState to, const std::string& reason);
  void FailWorkerJobsLocked(const std::string& worker_id, const std::string& why);
  void CancelRanksLocked(const Job& job, const std::string& except_worker = "");
  std::map<std::string, int32_t> FreeDevicesLocked() const;
  void ScheduleLocked();
  // A port in rank 0's range on its host that no scheduled or running job uses and that is not
  // quarantined; nullopt when the whole range is taken.
  std::optional<int32_t> PickRendezvousPortLocked(const Worker& rank0) const;
  std::vector<int32_t> FreeRendezvousPortListLocked(const Worker& rank0) const;
  int32_t FreeRendezvousPortsLocked(const Worker& rank0) const;

  Store* store_;
  const Clock* clock_;
  JobManagerOptions options_;
  WorkerRegistry registry_;
  mutable std::mutex mu_;
  std::map<std::string, Job> jobs_;
  // Per job, the last reported phase of each rank.
  std::map<std::string, std::map<int32_t, RankReport>> ranks_;
  std::map<std::string, std::vector<RankAssignment>> to_start_;  // by worker
  std::map<std::string, std::set<std::string>> to_cancel_;       // by worker
  // (host address, port) -> until when it is not handed out (reported busy).
  std::map<std::pair<std::string, int32_t>, int64_t> busy_ports_;
};

}  // namespace polytune::coordinator
