// The worker daemon's main loop as a step function, driven by an injected clock: register
// (retrying with exponential backoff while the coordinator is unreachable), heartbeat at the
// interval the coordinator asks for, carry out its orders through the RankSupervisor. The
// process's main() sleeps for what RunOnce returns; tests advance a FakeClock instead.
#pragma once

#include <cstdint>

#include "coordinator_client.h"
#include "polytune/common/clock.h"
#include "rank_supervisor.h"
#include "worker_telemetry.h"
#include "worker_types.h"

namespace polytune::worker {

struct AgentOptions {
  Registration registration;
  int64_t poll_interval_micros = 100'000;        // how often ranks are reaped between heartbeats
  int64_t initial_backoff_micros = 500'000;      // first retry after a failed call
  int64_t max_backoff_micros = 10'000'000;       // retries back off by doubling up to this
  int64_t default_heartbeat_micros = 1'000'000;  // when the coordinator names no interval
  // After BeginShutdown, how long the daemon keeps trying to report its ranks' exits (their
  // checkpoints uploaded first) before it gives up and stops anyway.
  int64_t shutdown_timeout_micros = 150'000'000;
};

class WorkerAgent {
 public:
  WorkerAgent(AgentOptions options, const Clock* clock, CoordinatorClient* client, RankSupervisor* ranks,
              WorkerTelemetry* telemetry = WorkerTelemetry::Null());

  // Does what is due now; returns the microseconds to wait before calling again.
  int64_t RunOnce();
  // Asks every rank to checkpoint and stop, and tells the coordinator to place nothing more
  // here; keep calling RunOnce until Stopped(): the ranks have exited and their exits (after
  // their checkpoints) reached the coordinator, or shutdown_timeout_micros passed.
  void BeginShutdown();
  bool Stopped() const;

  bool registered() const { return registered_; }
  int64_t heartbeat_interval_micros() const { return heartbeat_micros_; }

 private:
  void Backoff(int64_t now);
  void Register(int64_t now);
  void Heartbeat(int64_t now);

  AgentOptions o_;
  const Clock* clock_;
  CoordinatorClient* client_;
  RankSupervisor* ranks_;
  WorkerTelemetry* telemetry_;
  bool registered_ = false;
  bool ever_registered_ = false;
  bool shutting_down_ = false;
  int64_t shutdown_deadline_micros_ = 0;
  int64_t heartbeat_micros_;
  int64_t next_call_micros_ = 0;  // steady time of the next register/heartbeat
  int64_t backoff_micros_ = 0;    // current retry delay; 0 after a success
};

}  // namespace polytune::worker
