#include "polytune/coordinator/worker_registry.h"

#include "absl/strings/str_cat.h"

namespace polytune::coordinator {

std::vector<std::string> WorkerRegistry::Register(Worker worker) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> superseded;
  auto it = workers_.find(worker.id);
  if (it != workers_.end() && it->second.alive && it->second.incarnation != worker.incarnation)
    superseded.push_back(worker.id);
  // The same incarnation registering again (after a coordinator restart) stays drained.
  worker.draining = it != workers_.end() && it->second.incarnation == worker.incarnation && it->second.draining;
  worker.last_heartbeat_micros = clock_->NowMicros();
  worker.alive = true;
  worker.awaiting_contact = false;
  workers_[worker.id] = std::move(worker);
  ++version_;
  return superseded;
}

absl::Status WorkerRegistry::Heartbeat(const std::string& id, const std::string& incarnation) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  if (it == workers_.end())
    return absl::FailedPreconditionError(absl::StrCat("worker '", id, "' is not registered; register again"));
  if (it->second.incarnation != incarnation)
    return absl::FailedPreconditionError(
        absl::StrCat("worker '", id, "' incarnation ", incarnation, " was superseded; register again"));
  if (!it->second.alive)
    return absl::FailedPreconditionError(absl::StrCat("worker '", id, "' was declared lost; register again"));
  const int64_t now = clock_->NowMicros();
  // Heard from again after a restart or a silence that made it unschedulable: it may take ranks.
  if (it->second.awaiting_contact || now - it->second.last_heartbeat_micros > timeout_ / 2) ++version_;
  it->second.last_heartbeat_micros = now;
  it->second.awaiting_contact = false;
  return absl::OkStatus();
}

void WorkerRegistry::Restore(Worker worker) {
  absl::MutexLock lock(&mu_);
  worker.last_heartbeat_micros = clock_->NowMicros();
  worker.alive = true;
  worker.awaiting_contact = true;
  workers_[worker.id] = std::move(worker);
  ++version_;
}

std::vector<std::string> WorkerRegistry::ExpireSilent() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> lost;
  const int64_t now = clock_->NowMicros();
  for (auto& [id, w] : workers_) {
    if (w.alive && now - w.last_heartbeat_micros > timeout_) {
      w.alive = false;
      lost.push_back(id);
    }
  }
  if (!lost.empty()) ++version_;
  return lost;
}

std::vector<Worker> WorkerRegistry::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<Worker> out;
  for (const auto& [id, w] : workers_) out.push_back(w);
  return out;
}

std::vector<Worker> WorkerRegistry::Alive() const {
  std::vector<Worker> out;
  for (auto& w : Snapshot())
    if (w.alive) out.push_back(std::move(w));
  return out;
}

}  // namespace polytune::coordinator

namespace polytune::coordinator {

std::vector<Worker> WorkerRegistry::Schedulable() const {
  // A worker silent for half the timeout (two missed heartbeats) gets no new ranks: when a
  // rank fails because its peer's worker died, the job's restart must not land on the dead
  // worker before it is declared lost.
  const int64_t now = clock_->NowMicros();
  std::vector<Worker> out;
  for (auto& w : Snapshot())
    if (w.alive && !w.awaiting_contact && !w.draining && now - w.last_heartbeat_micros <= timeout_ / 2)
      out.push_back(std::move(w));
  return out;
}

absl::StatusOr<Worker> WorkerRegistry::SetDraining(const std::string& id, bool draining) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  if (it == workers_.end())
    return absl::NotFoundError(absl::StrCat("no worker '", id, "'; `polytune workers` lists them"));
  it->second.draining = draining;
  ++version_;
  return it->second;
}

uint64_t WorkerRegistry::version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}

}  // namespace polytune::coordinator
