// Control-plane domain types. No gRPC or proto types here: those are converted at the edge
// (proto_convert.cc).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace polytune::coordinator {

enum class JobState { kPending, kScheduled, kRunning, kSucceeded, kFailed, kCancelled };
const char* JobStateName(JobState s);
bool IsTerminal(JobState s);
// Whether the lifecycle PENDING -> SCHEDULED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED
// allows from -> to (PENDING and SCHEDULED may also fail or be cancelled; a lost gang may
// go back from SCHEDULED/RUNNING to PENDING when restarts are enabled).
bool IsAllowedTransition(JobState from, JobState to);

struct JobEvent {
  int64_t time_micros = 0;
  JobState state = JobState::kPending;
  std::string reason;
};

struct Job {
  std::string id;
  std::string name;
  int32_t priority = 0;  // higher first
  int64_t sequence = 0;  // submission order (FIFO within a priority)
  int32_t world_size = 1;
  std::string spec_yaml;  // the canonical job spec
  std::string model;      // model.path of the spec, for people and dashboards
  JobState state = JobState::kPending;
  std::string reason;  // why it is in this state (pending: what it waits for)
  int64_t submitted_micros = 0;
  std::vector<std::string> assigned_workers;  // one per rank while scheduled/running
  int32_t master_port = 0;                    // rendezvous port on rank 0's host while scheduled/running
  int32_t attempt = 0;                        // placements so far; rank reports of an earlier attempt are stale
  std::vector<JobEvent> events;
  // Fault handling (docs/control-plane.md, "Faults"): restarts after infrastructure failures,
  // counted against max_restarts; preemptions and drains requeue without counting.
  int32_t max_restarts = 3;
  bool preemptible = false;
  int32_t restarts = 0;
  int64_t not_before_micros = 0;  // a restarted job is not placed before this (backoff)
  int64_t resume_step = 0;        // the checkpoint its next or current placement resumes from
  std::string resume_sha256;      // of that checkpoint's archive; empty: from the start
  std::string stop_reason;        // a checkpoint-and-stop was asked of its ranks: why
  std::string owner;              // the principal that submitted it (empty with auth off)
};

// What a submission asks of fault handling (resources.max_restarts / preemptible).
struct FaultPolicy {
  int32_t max_restarts = 3;
  bool preemptible = false;
};

struct Device {
  std::string kind;  // "cpu" or "cuda"
  int32_t index = 0;
  int64_t memory_bytes = 0;
};

struct Worker {
  std::string id;           // stable name
  std::string incarnation;  // random per daemon start: a restarted worker is a new incarnation
  std::string address;      // host the worker's ranks bind to
  std::vector<Device> devices;
  // Ports this worker's host keeps for rank 0 rendezvous stores (--rendezvous-ports).
  int32_t rendezvous_port_first = 29600;
  int32_t rendezvous_port_count = 100;
  int64_t last_heartbeat_micros = 0;
  bool alive = true;
  // Reloaded from the store after a coordinator restart and not heard from since: it gets
  // the heartbeat timeout to show up (its jobs fail if it does not) and no new ranks meanwhile.
  bool awaiting_contact = false;
  // Drained: no new ranks (polytune workers drain, or its daemon said it is shutting down).
  // A new incarnation of the worker starts undrained.
  bool draining = false;
  // The principal whose token registered it (empty with auth off): only that principal may
  // heartbeat and report for it, or register a new incarnation while it is alive.
  std::string registered_by;
  int32_t slots() const { return static_cast<int32_t>(devices.size()); }
};

}  // namespace polytune::coordinator
