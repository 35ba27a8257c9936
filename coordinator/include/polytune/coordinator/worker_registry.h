// Registered workers and their liveness, judged against an injected clock.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "polytune/common/clock.h"
#include "polytune/coordinator/domain.h"

namespace polytune::coordinator {

class WorkerRegistry {
 public:
  WorkerRegistry(const Clock* clock, int64_t heartbeat_timeout_micros)
      : clock_(clock), timeout_(heartbeat_timeout_micros) {}

  // Registers (or re-registers) a worker. A new incarnation of a known id replaces the old
  // one; the old incarnation is reported lost by the return value (its jobs must fail).
  // Returns the ids of incarnations this registration superseded (empty or {id}).
  std::vector<std::string> Register(Worker worker);

  // FAILED_PRECONDITION for an unknown id or a stale incarnation: the daemon must register
  // again (it was declared lost, or the coordinator restarted without it).
  absl::Status Heartbeat(const std::string& id, const std::string& incarnation);

  // A worker known before a coordinator restart: alive but awaiting contact, its silence
  // counted from now. A heartbeat from its incarnation (or a registration) confirms it.
  void Restore(Worker worker);

  // Marks workers silent for longer than the timeout as lost and returns their ids.
  std::vector<std::string> ExpireSilent();

  // Sets or clears `draining`; returns the updated worker, NOT_FOUND for an unknown id.
  absl::StatusOr<Worker> SetDraining(const std::string& id, bool draining);

  std::vector<Worker> Snapshot() const;
  std::vector<Worker> Alive() const;
  // Alive, heard from since the last coordinator start and within half the timeout, and not
  // draining: may be given new ranks.
  std::vector<Worker> Schedulable() const;
  // Grows whenever a worker may have become alive or schedulable, or stopped being either
  // through an event (registration, a heartbeat after a silence or a restart, draining, loss).
  // Only time makes a worker unschedulable otherwise, and that never calls for placing a job.
  uint64_t version() const;

 private:
  const Clock* clock_;
  int64_t timeout_;
  mutable absl::Mutex mu_;
  std::map<std::string, Worker> workers_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace polytune::coordinator
