#include "worker_agent.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace polytune::worker {
namespace {

void Log(const std::string& msg) { std::fprintf(stderr, "polytune-worker: %s\n", msg.c_str()); }

}  // namespace

WorkerAgent::WorkerAgent(AgentOptions options, const Clock* clock, CoordinatorClient* client, RankSupervisor* ranks,
                         WorkerTelemetry* telemetry)
    : o_(std::move(options)),
      clock_(clock),
      client_(client),
      ranks_(ranks),
      telemetry_(telemetry),
      heartbeat_micros_(o_.default_heartbeat_micros),
      next_call_micros_(clock->SteadyNowMicros()) {}

void WorkerAgent::Backoff(int64_t now) {
  // Once registered, a worker retries at least every two heartbeat intervals: a restarted
  // coordinator waits only one heartbeat timeout (4 intervals) for it before declaring it lost
  // and restarting its jobs elsewhere.
  const int64_t cap = ever_registered_ ? std::min(o_.max_backoff_micros, 2 * heartbeat_micros_) : o_.max_backoff_micros;
  backoff_micros_ =
      backoff_micros_ == 0 ? std::min(cap, o_.initial_backoff_micros) : std::min(cap, backoff_micros_ * 2);
  next_call_micros_ = now + backoff_micros_;
}

void WorkerAgent::Register(int64_t now) {
  auto interval = client_->Register(o_.registration, ranks_->Reports());
  if (!interval.ok()) {
    Backoff(now);
    Log(absl::StrCat("cannot register: ", interval.status().message(), "; retrying in ", backoff_micros_ / 1000,
                     " ms"));
    return;
  }
  registered_ = true;
  ever_registered_ = true;
  backoff_micros_ = 0;
  heartbeat_micros_ = *interval > 0 ? *interval : o_.default_heartbeat_micros;
  next_call_micros_ = now;  // the first heartbeat goes at once
  Log(absl::StrCat("registered as ", o_.registration.worker_id, " (incarnation ", o_.registration.incarnation,
                   "), heartbeat every ", heartbeat_micros_ / 1000, " ms"));
}

void WorkerAgent::Heartbeat(int64_t now) {
  const std::vector<RankReport> reports = ranks_->Reports();
  auto orders = client_->Heartbeat(o_.registration.worker_id, o_.registration.incarnation, reports, shutting_down_);
  telemetry_->OnHeartbeat(static_cast<double>(clock_->SteadyNowMicros() - now) / 1e6);
  if (!orders.ok()) {
    if (orders.status().code() == absl::StatusCode::kFailedPrecondition) {
      registered_ = false;  // the coordinator lost us (restart, or declared lost): register again
      next_call_micros_ = now;
      return;
    }
    Backoff(now);
    return;
  }
  backoff_micros_ = 0;
  ranks_->Acknowledge(reports);
  for (const auto& job : orders->cancel_jobs) ranks_->Cancel(job);
  for (const auto& job : orders->preempt_jobs) ranks_->Preempt(job);
  if (!shutting_down_)
    for (const auto& a : orders->start) ranks_->Start(a);
  next_call_micros_ = now + heartbeat_micros_;
}

int64_t WorkerAgent::RunOnce() {
  ranks_->Poll();
  const RankSupervisor::Counts counts = ranks_->CountRanks();
  telemetry_->SetRanks(counts.running, counts.uploading, counts.exited);
  int64_t now = clock_->SteadyNowMicros();
  if (now >= next_call_micros_) {
    if (!registered_) {
      Register(now);
      if (registered_) Heartbeat(clock_->SteadyNowMicros());
    } else {
      Heartbeat(now);
    }
    now = clock_->SteadyNowMicros();
  }
  return std::max<int64_t>(0, std::min(next_call_micros_ - now, o_.poll_interval_micros));
}

void WorkerAgent::BeginShutdown() {
  shutting_down_ = true;
  shutdown_deadline_micros_ = clock_->SteadyNowMicros() + o_.shutdown_timeout_micros;
  ranks_->PreemptAll();
  next_call_micros_ = clock_->SteadyNowMicros();  // tell the coordinator now
}

bool WorkerAgent::Stopped() const {
  if (!shutting_down_) return false;
  const bool gone = !ranks_->HasLiveProcesses() && !ranks_->HasUnreportedExits();
  return gone || clock_->SteadyNowMicros() >= shutdown_deadline_micros_;
}

}  // namespace polytune::worker
