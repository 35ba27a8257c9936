#include "polytune/coordinator/job_manager.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "polytune/common/check.h"
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
  return absl::OkStatus();
}

absl::Status JobManager::TransitionLocked(Job& job, JobState to, const std::string& reason) {
  // The state machine is an invariant of this class: callers only ask for legal moves.
  POLYTUNE_CHECK(IsAllowedTransition(job.state, to)) << job.id << ": illegal transition " << JobStateName(job.state)
                                                     << " -> " << JobStateName(to) << " (" << reason << ")";
  const JobState from = job.state;
  job.state = to;
  job.reason = reason;
  job.events.push_back({clock_->NowMicros(), to, reason});
  if (IsTerminal(to) || to == JobState::kPending) {
    job.assigned_workers.clear();
    job.master_port = 0;
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
                                       const std::string& spec_yaml, const std::string& model) {
  if (world_size < 1) return absl::InvalidArgumentError("resources.world_size must be at least 1");
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
  job.submitted_micros = clock_->NowMicros();
  job.reason = "submitted";
  job.events.push_back({job.submitted_micros, JobState::kPending, "submitted"});
  absl::Status st = store_->PutJob(job);
  if (!st.ok()) return st;
  absl::MutexLock l(&mu_);
  jobs_[job.id] = job;
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

absl::Status JobManager::RegisterWorker(Worker worker) {
  const std::string id = worker.id;
  RETURN_IF_ERROR(store_->PutWorker(worker));
  std::vector<std::string> superseded = registry_.Register(std::move(worker));
  absl::MutexLock l(&mu_);
  for (const auto& w : superseded)
    RETURN_IF_ERROR(FailWorkerJobsLocked(w, absl::StrCat("worker ", w, " restarted (new incarnation)")));
  return ScheduleLocked();
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

absl::Status JobManager::FailWorkerJobsLocked(const std::string& worker_id, const std::string& why) {
  for (auto& [id, job] : jobs_) {
    if (job.state != JobState::kScheduled && job.state != JobState::kRunning) continue;
    if (std::find(job.assigned_workers.begin(), job.assigned_workers.end(), worker_id) == job.assigned_workers.end())
      continue;
    CancelRanksLocked(job, worker_id);
    RETURN_IF_ERROR(TransitionLocked(job, JobState::kFailed, why));
  }
  to_start_.erase(worker_id);
  return absl::OkStatus();
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
    CancelRanksLocked(job, worker_id);
    ranks_.erase(job.id);
    return TransitionLocked(job, JobState::kPending,
                            absl::StrCat("rendezvous port ", port, " on ", host, " (", worker_id,
                                         ") is taken by another process; placing the job again"));
  }
  if (r.phase == RankReport::Phase::kExited && r.exit_code != 0) {
    CancelRanksLocked(job, worker_id);
    return TransitionLocked(job, JobState::kFailed,
                            absl::StrCat("rank ", r.rank, " on ", worker_id, " exited with code ", r.exit_code,
                                         r.message.empty() ? "" : ": " + r.message));
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
    if (job.state == JobState::kScheduled) RETURN_IF_ERROR(TransitionLocked(job, JobState::kRunning, "all ranks ran"));
    return TransitionLocked(job, JobState::kSucceeded, "all ranks finished");
  }
  return absl::OkStatus();
}

absl::StatusOr<HeartbeatReply> JobManager::Heartbeat(const std::string& worker_id, const std::string& incarnation,
                                                     const std::vector<RankReport>& ranks) {
  absl::Status st = registry_.Heartbeat(worker_id, incarnation);
  if (!st.ok()) return st;
  absl::MutexLock l(&mu_);
  for (const auto& r : ranks) {
    auto it = jobs_.find(r.job_id);
    if (it == jobs_.end()) continue;
    Job& job = it->second;
    if (r.attempt != job.attempt) continue;  // a rank of an earlier placement, already stopped
    // Only a placed job listens to its ranks: once it ended or went back to PENDING, late
    // reports of its last placement change nothing.
    if (job.state != JobState::kScheduled && job.state != JobState::kRunning) continue;
    RETURN_IF_ERROR(ApplyRankReportLocked(job, worker_id, r));
  }
  RETURN_IF_ERROR(ScheduleLocked());
  HeartbeatReply reply;
  reply.start = std::move(to_start_[worker_id]);
  to_start_[worker_id].clear();
  reply.cancel_jobs.assign(to_cancel_[worker_id].begin(), to_cancel_[worker_id].end());
  to_cancel_[worker_id].clear();
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

absl::Status JobManager::ScheduleLocked() {
  const int64_t start = clock_->SteadyNowMicros();
  absl::Status st = PlaceJobsLocked();
  if (observer_) observer_->OnScheduleCycle(clock_->SteadyNowMicros() - start);
  return st;
}

absl::Status JobManager::PlaceJobsLocked() {
  std::vector<Job> pending;
  for (const auto& [id, job] : jobs_)
    if (job.state == JobState::kPending) pending.push_back(job);
  if (pending.empty()) return absl::OkStatus();
  std::map<std::string, int32_t> free = FreeDevicesLocked();
  std::vector<WorkerCapacity> caps;
  std::map<std::string, std::string> address;
  // A host cannot be rank 0 of more jobs than it has free rendezvous ports, so its workers
  // offer at most that many free devices (conservative for ranks > 0, which need no port;
  // with the default 100 ports per host it never binds in practice).
  // Workers reloaded after a coordinator restart get no new ranks until they are heard from.
  const std::vector<Worker> schedulable = registry_.Schedulable();
  std::map<std::string, int32_t> host_ports;
  for (const auto& w : schedulable)
    if (!host_ports.count(w.address)) host_ports[w.address] = FreeRendezvousPortsLocked(w);
  std::set<std::string> port_limited;  // "host (first-last)" whose ports held devices back
  for (const auto& w : schedulable) {
    const int32_t offered = std::min(std::max(0, free[w.id]), host_ports[w.address]);
    if (offered < free[w.id])
      port_limited.insert(absl::StrCat(w.address, " (", w.rendezvous_port_first, "-",
                                       w.rendezvous_port_first + w.rendezvous_port_count - 1, ")"));
    host_ports[w.address] -= offered;
    caps.push_back({w.id, w.slots(), offered});
    address[w.id] = w.address;
  }
  ScheduleDecision d = DecideSchedule(pending, caps);
  std::map<std::string, Worker> alive;
  for (const auto& w : schedulable) alive[w.id] = w;
  for (const auto& p : d.placements) {
    Job& job = jobs_[p.job_id];
    std::optional<int32_t> port = PickRendezvousPortLocked(alive[p.rank_workers[0]]);
    if (!port) {
      const Worker& w = alive[p.rank_workers[0]];
      const std::string why = absl::StrCat("every rendezvous port of ", w.id, " (", w.rendezvous_port_first, "-",
                                           w.rendezvous_port_first + w.rendezvous_port_count - 1,
                                           ") is in use; waiting for a job there to end");
      RETURN_IF_ERROR(SetReasonLocked(job, why));
      continue;
    }
    job.assigned_workers = p.rank_workers;
    job.master_port = *port;
    ++job.attempt;
    ranks_.erase(job.id);
    for (int32_t r = 0; r < job.world_size; ++r)
      to_start_[p.rank_workers[r]].push_back(
          {job.id, r, job.world_size, address[p.rank_workers[0]], *port, job.spec_yaml, job.attempt});
    RETURN_IF_ERROR(TransitionLocked(job, JobState::kScheduled,
                                     absl::StrCat("placed on ", absl::StrJoin(p.rank_workers, ", "), "; rendezvous at ",
                                                  address[p.rank_workers[0]], ":", *port)));
  }
  for (const auto& [id, reason] : d.waiting) {
    Job& job = jobs_[id];
    const std::string why = port_limited.empty() ? reason
                                                 : absl::StrCat(reason, "; every rendezvous port is in use on ",
                                                                absl::StrJoin(port_limited, ", "));
    RETURN_IF_ERROR(SetReasonLocked(job, why));
  }
  return absl::OkStatus();
}

std::vector<int32_t> JobManager::FreeRendezvousPortListLocked(const Worker& rank0) const {
  // Workers sharing a host share its ports, so ports in use are counted per address.
  std::set<int32_t> taken;
  std::map<std::string, std::string> address;
  for (const auto& w : registry_.Snapshot()) address[w.id] = w.address;
  for (const auto& [id, job] : jobs_)
    if ((job.state == JobState::kScheduled || job.state == JobState::kRunning) && !job.assigned_workers.empty() &&
        address[job.assigned_workers[0]] == rank0.address)
      taken.insert(job.master_port);
  const int64_t now = clock_->NowMicros();
  std::vector<int32_t> out;
  for (int32_t p = rank0.rendezvous_port_first; p < rank0.rendezvous_port_first + rank0.rendezvous_port_count; ++p) {
    auto busy = busy_ports_.find({rank0.address, p});
    if (!taken.count(p) && (busy == busy_ports_.end() || busy->second <= now)) out.push_back(p);
  }
  return out;
}

int32_t JobManager::FreeRendezvousPortsLocked(const Worker& rank0) const {
  return static_cast<int32_t>(FreeRendezvousPortListLocked(rank0).size());
}

std::optional<int32_t> JobManager::PickRendezvousPortLocked(const Worker& rank0) const {
  std::vector<int32_t> free = FreeRendezvousPortListLocked(rank0);
  if (free.empty()) return std::nullopt;
  return free.front();
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
    RETURN_IF_ERROR(FailWorkerJobsLocked(w, absl::StrCat("worker ", w, " lost: no heartbeat for ",
                                                         options_.heartbeat_timeout_micros / 1'000'000, " s")));
  }
  return ScheduleLocked();
}

}  // namespace polytune::coordinator
