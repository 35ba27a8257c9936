#include "polytune/coordinator/job_manager.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "polytune/common/check.h"
#include "polytune/common/exit_codes.h"
#include "polytune/common/status_macros.h"
#include "polytune/coordinator/scheduler.h"

namespace polytune::coordinator {

JobManager::JobManager(Store* store, const Clock* clock, JobManagerOptions options)
    : store_(store), clock_(clock), options_(options), registry_(clock, options.heartbeat_timeout_micros) {}

absl::Status JobManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<Job> jobs, store_->ListJobs());
  ASSIGN_OR_RETURN(std::vector<Worker> workers, store_->ListWorkers());
  for (auto& w : workers)
    if (w.alive) registry_.Restore(std::move(w));
  absl::MutexLock l(&mu_);
  if (observer_) observer_->OnRecovered(jobs);
  for (auto& j : jobs) jobs_[j.id] = std::move(j);
  ReissueOrdersLocked();
  return absl::OkStatus();
}

void JobManager::ReissueOrdersLocked() {
  // Orders live in memory until a heartbeat carries them; a restart lost them. A worker
  // ignores a start it already runs (same attempt), so sending one again is safe.
  for (const auto& [id, job] : jobs_) {
    if (job.state == JobState::kScheduled) {
      std::map<std::string, std::string> address;
      for (const auto& w : registry_.Snapshot()) address[w.id] = w.address;
      for (int32_t r = 0; r < job.world_size && r < static_cast<int32_t>(job.assigned_workers.size()); ++r)
        to_start_[job.assigned_workers[r]].push_back({job.id, r, job.world_size, address[job.assigned_workers[0]],
                                                      job.master_port, job.spec_yaml, job.attempt, job.resume_sha256,
                                                      job.resume_step});
    }
    if ((job.state == JobState::kScheduled || job.state == JobState::kRunning) && !job.stop_reason.empty())
      for (const auto& w : job.assigned_workers) to_preempt_[w].insert(job.id);
  }
}

absl::Status JobManager::TransitionLocked(Job& job, JobState to, const std::string& reason) {
  // The state machine is an invariant of this class: callers only ask for legal moves.
  POLYTUNE_CHECK(IsAllowedTransition(job.state, to)) << job.id << ": illegal transition " << JobStateName(job.state)
                                                     << " -> " << JobStateName(to) << " (" << reason << ")";
  const JobState from = job.state;
  ++schedule_inputs_version_;
  job.state = to;
  job.reason = reason;
  job.events.push_back({clock_->NowMicros(), to, reason});
  if (IsTerminal(to) || to == JobState::kPending) {
    for (const auto& w : job.assigned_workers) to_preempt_[w].erase(job.id);
    job.assigned_workers.clear();
    job.master_port = 0;
    job.stop_reason.clear();
    ranks_.erase(job.id);
    last_step_.erase(job.id);
  }
  if (observer_) observer_->OnTransition(job, from);
  return store_->PutJob(job);
}

absl::Status JobManager::SetReasonLocked(Job& job, const std::string& why) {
  if (job.reason == why) return absl::OkStatus();
  job.reason = why;
  return store_->PutJob(job);
}

absl::StatusOr<Job> JobManager::Submit(const std::string& name, int32_t priority, int32_t world_size,
                                       const std::string& spec_yaml, const std::string& model, FaultPolicy policy,
                                       const std::string& owner) {
  if (world_size < 1) return absl::InvalidArgumentError("resources.world_size must be at least 1");
  if (policy.max_restarts < 0) return absl::InvalidArgumentError("resources.max_restarts must be at least 0");
  auto seq = store_->NextJobSequence();
  if (!seq.ok()) return seq.status();
  Job job;
  job.id = absl::StrFormat("job-%06d", *seq);
  job.name = name.empty() ? job.id : name;
  job.priority = priority;
  job.sequence = *seq;
  job.world_size = world_size;
  job.spec_yaml = spec_yaml;
  job.model = model;
  job.owner = owner;
  job.max_restarts = policy.max_restarts;
  job.preemptible = policy.preemptible;
  job.submitted_micros = clock_->NowMicros();
  job.reason = "submitted";
  job.events.push_back({job.submitted_micros, JobState::kPending, "submitted"});
  absl::Status st = store_->PutJob(job);
  if (!st.ok()) return st;
  absl::MutexLock l(&mu_);
  jobs_[job.id] = job;
  ++schedule_inputs_version_;
  if (observer_) observer_->OnSubmitted(job);
  RETURN_IF_ERROR(ScheduleLocked());
  return jobs_[job.id];
}

absl::StatusOr<Job> JobManager::Cancel(const std::string& id) {
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job '", id, "'; `polytune jobs` lists them"));
  Job& job = it->second;
  if (IsTerminal(job.state)) return job;
  CancelRanksLocked(job);
  RETURN_IF_ERROR(TransitionLocked(job, JobState::kCancelled, "cancelled by user"));
  RETURN_IF_ERROR(ScheduleLocked());
  return job;
}

absl::StatusOr<Job> JobManager::Get(const std::string& id) const {
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job '", id, "'; `polytune jobs` lists them"));
  return it->second;
}

std::vector<Job> JobManager::List() const {
  absl::MutexLock l(&mu_);
  std::vector<Job> out;
  for (const auto& [id, j] : jobs_) out.push_back(j);
  std::sort(out.begin(), out.end(), [](const Job& a, const Job& b) { return a.sequence < b.sequence; });
  return out;
}

absl::Status JobManager::RegisterWorker(Worker worker, const std::vector<RankReport>& ranks) {
  const std::string id = worker.id;
  std::vector<std::string> superseded = registry_.Register(std::move(worker));
  for (const auto& w : registry_.Snapshot())
    if (w.id == id) RETURN_IF_ERROR(store_->PutWorker(w));
  absl::MutexLock l(&mu_);
  for (const auto& w : superseded)
    RETURN_IF_ERROR(RestartWorkerJobsLocked(w, absl::StrCat("worker ", w, " restarted (its ranks died with it)")));
  // The ranks it still runs (a coordinator restart): re-attached, like a heartbeat's report.
  RETURN_IF_ERROR(ApplyReportsLocked(id, ranks));
  return ScheduleLocked();
}

absl::StatusOr<Worker> JobManager::Drain(const std::string& worker_id, bool let_finish) {
  ASSIGN_OR_RETURN(Worker w, registry_.SetDraining(worker_id, true));
  RETURN_IF_ERROR(store_->PutWorker(w));
  absl::MutexLock l(&mu_);
  if (!let_finish) {
    const std::string why = absl::StrCat("worker ", worker_id, " is draining");
    for (auto& [id, job] : jobs_) {
      if (std::find(job.assigned_workers.begin(), job.assigned_workers.end(), worker_id) == job.assigned_workers.end())
        continue;
      if (job.state == JobState::kScheduled) {
        RETURN_IF_ERROR(RequeueLocked(job, why, /*counts=*/false));  // nothing to checkpoint yet
      } else if (job.state == JobState::kRunning && job.stop_reason.empty()) {
        RETURN_IF_ERROR(RequestStopLocked(job, why));
      }
    }
  }
  RETURN_IF_ERROR(ScheduleLocked());
  return w;
}

absl::StatusOr<Worker> JobManager::Undrain(const std::string& worker_id) {
  ASSIGN_OR_RETURN(Worker w, registry_.SetDraining(worker_id, false));
  RETURN_IF_ERROR(store_->PutWorker(w));
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(ScheduleLocked());
  return w;
}

bool JobManager::AcceptsResults(const std::string& job_id, int32_t attempt) const {
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(job_id);
  return it != jobs_.end() && it->second.attempt == attempt &&
         (it->second.state == JobState::kScheduled || it->second.state == JobState::kRunning);
}

std::optional<Worker> JobManager::FindWorker(const std::string& worker_id) const {
  for (auto& w : registry_.Snapshot())
    if (w.id == worker_id) return w;
  return std::nullopt;
}

bool JobManager::IsPlacedOn(const std::string& job_id, const std::string& worker_id) const {
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return false;
  const Job& job = it->second;
  return (job.state == JobState::kScheduled || job.state == JobState::kRunning) &&
         std::find(job.assigned_workers.begin(), job.assigned_workers.end(), worker_id) != job.assigned_workers.end();
}

void JobManager::NoteProgress(const std::string& job_id, int64_t step) {
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(job_id);
  if (it != jobs_.end() && (it->second.state == JobState::kScheduled || it->second.state == JobState::kRunning))
    last_step_[job_id] = std::max(last_step_[job_id], step);
}

void JobManager::CancelRanksLocked(const Job& job, const std::string& except_worker) {
  for (const auto& w : job.assigned_workers) {
    if (w == except_worker) continue;
    to_cancel_[w].insert(job.id);
    auto& queue = to_start_[w];
    queue.erase(std::remove_if(queue.begin(), queue.end(), [&](const RankAssignment& a) { return a.job_id == job.id; }),
                queue.end());
  }
}

absl::Status JobManager::RestartWorkerJobsLocked(const std::string& worker_id, const std::string& why) {
  to_start_.erase(worker_id);
  to_preempt_.erase(worker_id);
  for (auto& [id, job] : jobs_) {
    if (job.state != JobState::kScheduled && job.state != JobState::kRunning) continue;
    if (std::find(job.assigned_workers.begin(), job.assigned_workers.end(), worker_id) == job.assigned_workers.end())
      continue;
    RETURN_IF_ERROR(RequeueLocked(job, why, /*counts=*/true));
  }
  return absl::OkStatus();
}

absl::Status JobManager::RequeueLocked(Job& job, const std::string& why, bool counts) {
  CancelRanksLocked(job);
  for (const auto& w : job.assigned_workers) to_preempt_[w].erase(job.id);
  const std::string at = last_step_.count(job.id) ? absl::StrCat(" at step ", last_step_[job.id]) : "";
  // Checkpoints are recorded only once verified; the last one is where the job resumes.
  ASSIGN_OR_RETURN(std::vector<CheckpointRecord> checkpoints, store_->Checkpoints(job.id));
  const std::string from = checkpoints.empty() ? std::string("the start (no checkpoint yet)")
                                               : absl::StrCat("checkpoint step ", checkpoints.back().step);
  if (counts && job.restarts >= job.max_restarts)
    return TransitionLocked(job, JobState::kFailed,
                            absl::StrCat(why, at, "; no restarts left (resources.max_restarts: ", job.max_restarts,
                                         "; every attempt's reason is in the events)"));
  job.resume_step = checkpoints.empty() ? 0 : checkpoints.back().step;
  job.resume_sha256 = checkpoints.empty() ? "" : checkpoints.back().sha256;
  // The steps the next placement repeats must not appear twice in the job's metrics.
  RETURN_IF_ERROR(store_->DropMetricsAfter(job.id, job.resume_step));
  std::string reason;
  if (counts) {
    ++job.restarts;
    const int64_t backoff = std::min(options_.restart_backoff_max_micros,
                                     options_.restart_backoff_micros << std::min<int32_t>(job.restarts - 1, 30));
    job.not_before_micros = clock_->NowMicros() + backoff;
    reason = absl::StrCat("restart ", job.restarts, " of ", job.max_restarts, ": ", why, at, "; resuming from ", from,
                          " after ", absl::StrFormat("%.1f", backoff / 1e6), " s");
  } else {
    job.not_before_micros = 0;
    reason = absl::StrCat(why, at, "; resuming from ", from);
  }
  return TransitionLocked(job, JobState::kPending, reason);
}

absl::Status JobManager::RequestStopLocked(Job& job, const std::string& why) {
  job.stop_reason = why;
  ++schedule_inputs_version_;
  for (const auto& w : job.assigned_workers) to_preempt_[w].insert(job.id);
  RETURN_IF_ERROR(SetReasonLocked(job, absl::StrCat("stopping with a checkpoint: ", why)));
  return store_->PutJob(job);
}

absl::Status JobManager::ApplyRankReportLocked(Job& job, const std::string& worker_id, const RankReport& r) {
  ranks_[job.id][r.rank] = r;
  // (Also from RUNNING: the other ranks may have started while rank 0 lost the port race.)
  if (r.rendezvous_port_busy) {
    // Another process holds the port on rank 0's host: stop the other ranks, keep the port
    // off that host for a while, and place the job again.
    std::string host;
    for (const auto& w : registry_.Alive())
      if (w.id == worker_id) host = w.address;
    const int32_t port = job.master_port;
    busy_ports_[{host, port}] = clock_->NowMicros() + options_.busy_port_quarantine_micros;
    ++schedule_inputs_version_;
    CancelRanksLocked(job, worker_id);
    ranks_.erase(job.id);
    return TransitionLocked(job, JobState::kPending,
                            absl::StrCat("rendezvous port ", port, " on ", host, " (", worker_id,
                                         ") is taken by another process; placing the job again"));
  }
  if (r.phase == RankReport::Phase::kExited && r.exit_code != 0) {
    const std::string exited = absl::StrCat("rank ", r.rank, " on ", worker_id, " exited with code ", r.exit_code,
                                            r.message.empty() ? "" : ": " + r.message);
    if (r.exit_code == kExitBadInput) {  // restarting cannot fix it
      CancelRanksLocked(job, worker_id);
      return TransitionLocked(job, JobState::kFailed, absl::StrCat(exited, " (bad input: not restarted)"));
    }
    if (r.exit_code == kExitPreempted) {
      // Rank 0 writes the checkpoint and reports only after uploading it; the others wait.
      if (r.rank != 0) return absl::OkStatus();
      const std::string why =
          job.stop_reason.empty() ? absl::StrCat("stopped on request (SIGTERM) on ", worker_id) : job.stop_reason;
      return RequeueLocked(job, why, /*counts=*/false);
    }
    return RequeueLocked(job, exited, /*counts=*/true);
  }
  // An exited rank has been running.
  int32_t running = 0, exited_ok = 0;
  for (const auto& [rank, rep] : ranks_[job.id]) {
    running += rep.phase == RankReport::Phase::kRunning || rep.phase == RankReport::Phase::kExited;
    exited_ok += rep.phase == RankReport::Phase::kExited && rep.exit_code == 0;
  }
  if (job.state == JobState::kScheduled && running == job.world_size) {
    const std::string why = job.world_size == 1 ? std::string("its rank is running")
                                                : absl::StrCat("all ", job.world_size, " ranks running");
    RETURN_IF_ERROR(TransitionLocked(job, JobState::kRunning, why));
  }
  if (exited_ok == job.world_size) {
    // A worker reports rank 0's exit only after its final checkpoint was stored. Success
    // without it (an upload lost, or a worker reporting work it did not do) is a failed
    // attempt: the job never SUCCEEDS with nothing to download.
    auto checkpoints = store_->Checkpoints(job.id);
    if (!checkpoints.ok()) return checkpoints.status();
    const int64_t trained = last_step_[job.id];
    if (checkpoints->empty() || checkpoints->back().step < trained)
      return RequeueLocked(job,
                           absl::StrCat("all ranks reported success but no final checkpoint arrived (",
                                        checkpoints->empty() ? std::string("none stored")
                                                             : absl::StrCat("latest: step ", checkpoints->back().step),
                                        ", metrics reached step ", trained, ")"),
                           /*counts=*/true);
    if (job.state == JobState::kScheduled) RETURN_IF_ERROR(TransitionLocked(job, JobState::kRunning, "all ranks ran"));
    return TransitionLocked(job, JobState::kSucceeded, "all ranks finished");
  }
  return absl::OkStatus();
}

absl::Status JobManager::ApplyReportsLocked(const std::string& worker_id, const std::vector<RankReport>& ranks) {
  for (const auto& r : ranks) {
    auto it = jobs_.find(r.job_id);
    const bool live = r.phase != RankReport::Phase::kExited;
    if (it == jobs_.end()) {
      if (live) to_cancel_[worker_id].insert(r.job_id);  // a job this coordinator never knew of
      continue;
    }
    Job& job = it->second;
    const bool placed = job.state == JobState::kScheduled || job.state == JobState::kRunning;
    // Only a placed job listens to its ranks, and only to those of its current placement:
    // once it ended or went back to PENDING, late reports change nothing, and a rank still
    // running for it is stopped (the order may have been lost in a coordinator restart).
    if (!placed || r.attempt != job.attempt) {
      const bool placed_here = placed && std::find(job.assigned_workers.begin(), job.assigned_workers.end(),
                                                   worker_id) != job.assigned_workers.end();
      if (live && !placed_here) to_cancel_[worker_id].insert(r.job_id);
      continue;
    }
    RETURN_IF_ERROR(ApplyRankReportLocked(job, worker_id, r));
  }
  return absl::OkStatus();
}

absl::StatusOr<HeartbeatReply> JobManager::Heartbeat(const std::string& worker_id, const std::string& incarnation,
                                                     const std::vector<RankReport>& ranks, bool shutting_down) {
  absl::Status st = registry_.Heartbeat(worker_id, incarnation);
  if (!st.ok()) return st;
  if (shutting_down) {
    bool already = false;
    for (const auto& w : registry_.Snapshot())
      if (w.id == worker_id) already = w.draining;
    if (!already) {
      ASSIGN_OR_RETURN(Worker w, registry_.SetDraining(worker_id, true));
      RETURN_IF_ERROR(store_->PutWorker(w));
    }
  }
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(ApplyReportsLocked(worker_id, ranks));
  RETURN_IF_ERROR(ScheduleLocked());
  HeartbeatReply reply;
  reply.start = std::move(to_start_[worker_id]);
  to_start_[worker_id].clear();
  reply.cancel_jobs.assign(to_cancel_[worker_id].begin(), to_cancel_[worker_id].end());
  to_cancel_[worker_id].clear();
  // Stop orders are repeated until the job leaves the worker (a worker ignores repeats).
  reply.preempt_jobs.assign(to_preempt_[worker_id].begin(), to_preempt_[worker_id].end());
  return reply;
}

std::map<std::string, int32_t> JobManager::FreeDevicesLocked() const {
  std::map<std::string, int32_t> free;
  for (const auto& w : registry_.Alive()) free[w.id] = w.slots();
  for (const auto& [id, job] : jobs_)
    if (job.state == JobState::kScheduled || job.state == JobState::kRunning)
      for (const auto& w : job.assigned_workers)
        if (free.count(w)) --free[w];
  return free;
}

std::map<std::string, int32_t> JobManager::FreeDevices() const {
  absl::MutexLock l(&mu_);
  return FreeDevicesLocked();
}

absl::Status JobManager::Tick() {
  std::vector<std::string> lost = registry_.ExpireSilent();
  absl::MutexLock l(&mu_);
  for (const auto& w : lost) {
    Worker copy;
    for (const auto& x : registry_.Snapshot())
      if (x.id == w) copy = x;
    if (observer_) observer_->OnWorkerLost(w);
    RETURN_IF_ERROR(store_->PutWorker(copy));
    RETURN_IF_ERROR(RestartWorkerJobsLocked(w, absl::StrCat("worker ", w, " lost (no heartbeat for ",
                                                            options_.heartbeat_timeout_micros / 1'000'000, " s)")));
  }
  return ScheduleLocked(/*force=*/true);
}

}  // namespace polytune::coordinator
