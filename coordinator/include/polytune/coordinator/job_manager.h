// The coordinator's core: job lifecycle, worker liveness and gang placement, driven by
// calls from the gRPC layer (which only translates) and by Tick(). Time comes from an
// injected Clock, state persists through a Store after every change.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "polytune/common/clock.h"
#include "polytune/common/rank_types.h"
#include "polytune/coordinator/domain.h"
#include "polytune/coordinator/store.h"
#include "polytune/coordinator/worker_registry.h"

namespace polytune::coordinator {

// The shared rank types (polytune/common/rank_types.h).
using RankAssignment = polytune::RankAssignment;
using RankReport = polytune::RankReport;

struct HeartbeatReply {
  std::vector<RankAssignment> start;
  std::vector<std::string> cancel_jobs;
  std::vector<std::string> preempt_jobs;  // checkpoint, upload and exit with kExitPreempted
};

// Hears of job and worker changes as they happen (metrics, audit). Called with the
// JobManager's lock held: implementations must be quick and must not call back into it.
class JobObserver {
 public:
  virtual ~JobObserver() = default;
  virtual void OnRecovered(const std::vector<Job>& jobs) {}
  virtual void OnSubmitted(const Job& job) {}
  // `job` has just entered job.state from `from`, at job.events.back().time_micros.
  virtual void OnTransition(const Job& job, JobState from) {}
  virtual void OnWorkerLost(const std::string& worker_id) {}
  virtual void OnScheduleCycle(int64_t steady_micros) {}
};

struct JobManagerOptions {
  int64_t heartbeat_timeout_micros = 10'000'000;
  // A rendezvous port a worker found taken by another process is not handed out again on that
  // host for this long.
  int64_t busy_port_quarantine_micros = 60'000'000;
  // Restart n of a job waits restart_backoff * 2^(n-1), at most restart_backoff_max, so a
  // crash loop does not hammer the cluster.
  int64_t restart_backoff_micros = 10'000'000;
  int64_t restart_backoff_max_micros = 300'000'000;
};

class JobManager {
 public:
  JobManager(Store* store, const Clock* clock, JobManagerOptions options = {});
  // Set once, before Recover() and any call; not owned.
  void SetObserver(JobObserver* observer) { observer_ = observer; }

  // Reloads jobs and workers from the store (after a coordinator restart). Workers come back
  // awaiting contact: one that does not heartbeat within the timeout is lost, and so are the
  // jobs it was running.
  absl::Status Recover();

  absl::StatusOr<Job> Submit(const std::string& name, int32_t priority, int32_t world_size,
                             const std::string& spec_yaml, const std::string& model = "", FaultPolicy policy = {},
                             const std::string& owner = "");
  absl::StatusOr<Job> Cancel(const std::string& id);
  absl::StatusOr<Job> Get(const std::string& id) const;
  std::vector<Job> List() const;

  // Registers a worker with the ranks it runs or has not yet reported (after a coordinator
  // restart they are re-attached to their jobs). A new incarnation of a worker that ran ranks
  // restarts their jobs.
  absl::Status RegisterWorker(Worker worker, const std::vector<RankReport>& ranks = {});
  // `shutting_down`: the daemon is stopping; it is drained (its ranks checkpoint themselves).
  absl::StatusOr<HeartbeatReply> Heartbeat(const std::string& worker_id, const std::string& incarnation,
                                           const std::vector<RankReport>& ranks, bool shutting_down = false);
  // No new ranks on the worker; its running jobs checkpoint and are placed again elsewhere
  // unless `let_finish`.
  absl::StatusOr<Worker> Drain(const std::string& worker_id, bool let_finish);
  absl::StatusOr<Worker> Undrain(const std::string& worker_id);
  // Whether results (metrics, checkpoints) of `attempt` of the job are current: it is placed
  // and that is its placement. Results of a superseded attempt are dropped.
  bool AcceptsResults(const std::string& job_id, int32_t attempt) const;
  // The last step a job's current placement reported (for restart reasons).
  void NoteProgress(const std::string& job_id, int64_t step);
  std::optional<Worker> FindWorker(const std::string& worker_id) const;
  // Whether `worker_id` holds a rank of the job's current placement.
  bool IsPlacedOn(const std::string& job_id, const std::string& worker_id) const;
  std::vector<Worker> Workers() const { return registry_.Snapshot(); }
  // Free devices per alive worker (devices minus ranks of scheduled or running jobs).
  std::map<std::string, int32_t> FreeDevices() const;

  // Declares silent workers lost (failing their jobs) and places pending jobs. An error means
  // the store refused a write; the in-memory state is ahead of it until the next write.
  absl::Status Tick();

 private:
  // Moves `job` along the lifecycle and persists it. An illegal transition is a programming
  // error (CHECK); a refused store write is returned.
  [[nodiscard]] absl::Status TransitionLocked(Job& job, JobState to, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The worker's jobs lost their ranks there: each restarts (or fails past max_restarts).
  [[nodiscard]] absl::Status RestartWorkerJobsLocked(const std::string& worker_id, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops the job's ranks and puts it back to PENDING to resume from its last verified
  // checkpoint. `counts`: an infrastructure failure, counted against max_restarts (past it the
  // job FAILS) and backed off; otherwise a preemption or drain.
  [[nodiscard]] absl::Status RequeueLocked(Job& job, const std::string& why, bool counts)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Asks the job's ranks to checkpoint and stop (they exit with kExitPreempted).
  [[nodiscard]] absl::Status RequestStopLocked(Job& job, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops running preemptible jobs a waiting higher-priority job needs the devices of.
  [[nodiscard]] absl::Status PreemptForLocked(const std::vector<Job>& waiting, const std::vector<Worker>& schedulable,
                                              int32_t free_devices) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Re-issues what a coordinator restart forgot: starts of SCHEDULED jobs, pending stops.
  void ReissueOrdersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  [[nodiscard]] absl::Status ApplyReportsLocked(const std::string& worker_id, const std::vector<RankReport>& ranks)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelRanksLocked(const Job& job, const std::string& except_worker = "") ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies one rank report of the job's current placement.
  [[nodiscard]] absl::Status ApplyRankReportLocked(Job& job, const std::string& worker_id, const RankReport& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::map<std::string, int32_t> FreeDevicesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A timed PlaceJobsLocked, run only when something it reads changed since the last one (a job
  // moved or was asked to stop, the registry changed) or a backoff or port quarantine it waited
  // on ran out; `force` (Tick) decides regardless, so a missed trigger costs at most one tick.
  [[nodiscard]] absl::Status ScheduleLocked(bool force = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  [[nodiscard]] absl::Status PlaceJobsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  [[nodiscard]] absl::Status SetReasonLocked(Job& job, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A port in rank 0's range on its host that no scheduled or running job uses and that is not
  // quarantined; nullopt when the whole range is taken.
  std::optional<int32_t> PickRendezvousPortLocked(const Worker& rank0) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<int32_t> FreeRendezvousPortListLocked(const Worker& rank0) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int32_t FreeRendezvousPortsLocked(const Worker& rank0) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Store* store_;
  const Clock* clock_;
  JobObserver* observer_ = nullptr;
  JobManagerOptions options_;
  WorkerRegistry registry_;
  mutable absl::Mutex mu_;
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);
  // Per job, the last reported phase of each rank.
  std::map<std::string, std::map<int32_t, RankReport>> ranks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<RankAssignment>> to_start_ ABSL_GUARDED_BY(mu_);  // by worker
  std::map<std::string, std::set<std::string>> to_cancel_ ABSL_GUARDED_BY(mu_);       // by worker
  std::map<std::string, std::set<std::string>> to_preempt_ ABSL_GUARDED_BY(mu_);      // by worker
  std::map<std::string, int64_t> last_step_ ABSL_GUARDED_BY(mu_);                     // by job
  // (host address, port) -> until when it is not handed out (reported busy).
  std::map<std::pair<std::string, int32_t>, int64_t> busy_ports_ ABSL_GUARDED_BY(mu_);
  // Incremental scheduling: the inputs' version now and at the last decision, and when a timer
  // the last decision waited on (restart backoff, port quarantine) runs out.
  uint64_t schedule_inputs_version_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t decided_inputs_version_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t decided_registry_version_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_timer_micros_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace polytune::coordinator
