// JobManager's placement half: pending jobs onto free devices (scheduler.h decides), ports
// for rank 0 rendezvous stores, restart backoff and priority preemption.
#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "polytune/common/status_macros.h"
#include "polytune/coordinator/job_manager.h"
#include "polytune/coordinator/scheduler.h"

namespace polytune::coordinator {

absl::Status JobManager::ScheduleLocked(bool force) {
  const int64_t now = clock_->NowMicros();
  const uint64_t registry_version = registry_.version();
  if (!force && schedule_inputs_version_ == decided_inputs_version_ && registry_version == decided_registry_version_ &&
      now < next_timer_micros_)
    return absl::OkStatus();  // nothing the decision reads has changed: it would decide the same
  decided_inputs_version_ = schedule_inputs_version_;
  decided_registry_version_ = registry_version;
  const int64_t start = clock_->SteadyNowMicros();
  absl::Status st = PlaceJobsLocked();
  // The next timer: the earliest restart backoff or port quarantine still running.
  next_timer_micros_ = std::numeric_limits<int64_t>::max();
  for (const auto& [id, job] : jobs_)
    if (job.state == JobState::kPending && job.not_before_micros > now)
      next_timer_micros_ = std::min(next_timer_micros_, job.not_before_micros);
  for (const auto& [port, until] : busy_ports_)
    if (until > now) next_timer_micros_ = std::min(next_timer_micros_, until);
  if (observer_) observer_->OnScheduleCycle(clock_->SteadyNowMicros() - start);
  return st;
}

absl::Status JobManager::PlaceJobsLocked() {
  std::vector<Job> pending;
  const int64_t now = clock_->NowMicros();
  // A restarted job waits out its backoff (its reason says so) before it is considered.
  for (const auto& [id, job] : jobs_)
    if (job.state == JobState::kPending && job.not_before_micros <= now) pending.push_back(job);
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
      to_start_[p.rank_workers[r]].push_back({job.id, r, job.world_size, address[p.rank_workers[0]], *port,
                                              job.spec_yaml, job.attempt, job.resume_sha256, job.resume_step});
    RETURN_IF_ERROR(TransitionLocked(
        job, JobState::kScheduled,
        absl::StrCat("placed on ", absl::StrJoin(p.rank_workers, ", "), "; rendezvous at ", address[p.rank_workers[0]],
                     ":", *port, job.resume_step > 0 ? absl::StrCat("; resuming at step ", job.resume_step) : "")));
  }
  std::vector<Job> waiting;
  for (const auto& [id, reason] : d.waiting) {
    Job& job = jobs_[id];
    waiting.push_back(job);
    const std::string why = port_limited.empty() ? reason
                                                 : absl::StrCat(reason, "; every rendezvous port is in use on ",
                                                                absl::StrJoin(port_limited, ", "));
    RETURN_IF_ERROR(SetReasonLocked(job, why));
  }
  int32_t free_now = 0;
  for (const auto& c : caps) free_now += c.free;
  for (const auto& p : d.placements) free_now -= jobs_[p.job_id].world_size;
  return PreemptForLocked(waiting, schedulable, std::max(0, free_now));
}

absl::Status JobManager::PreemptForLocked(const std::vector<Job>& waiting, const std::vector<Worker>& schedulable,
                                          int32_t free_devices) {
  if (waiting.empty()) return absl::OkStatus();
  // Most clusters have no preemptible job running: then there is nothing to decide.
  if (std::none_of(jobs_.begin(), jobs_.end(), [](const auto& entry) {
        return entry.second.preemptible && entry.second.state == JobState::kRunning;
      }))
    return absl::OkStatus();
  // The first waiting job in scheduling order (highest priority, oldest) that the schedulable
  // cluster could hold at all; one per cycle keeps the decision simple and stable.
  int32_t total = 0;
  std::set<std::string> usable;
  for (const auto& w : schedulable) {
    total += w.slots();
    usable.insert(w.id);
  }
  std::vector<Job> order = waiting;
  std::sort(order.begin(), order.end(), [](const Job& a, const Job& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.sequence < b.sequence;
  });
  const Job* first = nullptr;
  for (const auto& j : order)
    if (j.world_size <= total) {
      first = &j;
      break;
    }
  if (!first) return absl::OkStatus();
  std::vector<PlacedJob> placed;
  for (const auto& [id, job] : jobs_) {
    if (job.state != JobState::kScheduled && job.state != JobState::kRunning) continue;
    int32_t devices = 0;
    for (const auto& w : job.assigned_workers) devices += usable.count(w) ? 1 : 0;
    // A job still starting has nothing to checkpoint and is not worth stopping.
    const bool candidate = job.preemptible && job.state == JobState::kRunning;
    placed.push_back({id, job.priority, job.sequence, candidate, !job.stop_reason.empty(), devices});
  }
  for (const auto& id : ChoosePreemptions(*first, free_devices, placed)) {
    Job& victim = jobs_[id];
    RETURN_IF_ERROR(RequestStopLocked(victim, absl::StrCat("preempted by ", first->id, " (priority ", first->priority,
                                                           " over ", victim.priority, ")")));
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

}  // namespace polytune::coordinator
