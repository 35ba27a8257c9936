#include "polytune/coordinator/proto_convert.h"

#include "absl/strings/str_cat.h"

namespace polytune::coordinator {

v1::JobState ToProto(JobState s) {
  switch (s) {
    case JobState::kPending:
      return v1::PENDING;
    case JobState::kScheduled:
      return v1::SCHEDULED;
    case JobState::kRunning:
      return v1::RUNNING;
    case JobState::kSucceeded:
      return v1::SUCCEEDED;
    case JobState::kFailed:
      return v1::FAILED;
    case JobState::kCancelled:
      return v1::CANCELLED;
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

absl::StatusOr<JobState> FromProto(v1::JobState s) {
  switch (s) {
    case v1::PENDING:
      return JobState::kPending;
    case v1::SCHEDULED:
      return JobState::kScheduled;
    case v1::RUNNING:
      return JobState::kRunning;
    case v1::SUCCEEDED:
      return JobState::kSucceeded;
    case v1::FAILED:
      return JobState::kFailed;
    case v1::CANCELLED:
      return JobState::kCancelled;
    default:
      return absl::InvalidArgumentError(absl::StrCat("job state ", static_cast<int>(s), " is not valid"));
  }
}

v1::Job ToProto(const Job& j) {
  v1::Job p;
  p.set_id(j.id);
  p.set_name(j.name);
  p.set_priority(j.priority);
  p.set_world_size(j.world_size);
  p.set_state(ToProto(j.state));
  p.set_reason(j.reason);
  p.set_submitted_unix_micros(j.submitted_micros);
  for (const auto& w : j.assigned_workers) p.add_assigned_workers(w);
  p.set_master_port(j.master_port);
  p.set_attempt(j.attempt);
  p.set_restarts(j.restarts);
  p.set_max_restarts(j.max_restarts);
  p.set_preemptible(j.preemptible);
  p.set_resume_step(j.resume_step);
  p.set_owner(j.owner);
  for (const auto& e : j.events) {
    auto* pe = p.add_events();
    pe->set_time_unix_micros(e.time_micros);
    pe->set_state(ToProto(e.state));
    pe->set_reason(e.reason);
  }
  p.set_spec_yaml(j.spec_yaml);
  return p;
}

absl::StatusOr<Job> FromProto(const v1::Job& p) {
  Job j;
  j.id = p.id();
  j.name = p.name();
  j.priority = p.priority();
  j.world_size = p.world_size();
  if (j.world_size < 1) return absl::InvalidArgumentError("job.world_size must be at least 1");
  auto state = FromProto(p.state());
  if (!state.ok()) return state.status();
  j.state = *state;
  j.reason = p.reason();
  j.submitted_micros = p.submitted_unix_micros();
  j.assigned_workers.assign(p.assigned_workers().begin(), p.assigned_workers().end());
  j.master_port = p.master_port();
  j.attempt = p.attempt();
  j.restarts = p.restarts();
  j.max_restarts = p.max_restarts();
  j.preemptible = p.preemptible();
  j.resume_step = p.resume_step();
  j.owner = p.owner();
  for (const auto& pe : p.events()) {
    auto es = FromProto(pe.state());
    if (!es.ok()) return es.status();
    j.events.push_back({pe.time_unix_micros(), *es, pe.reason()});
  }
  j.spec_yaml = p.spec_yaml();
  return j;
}

v1::Checkpoint ToProto(const CheckpointRecord& c) {
  v1::Checkpoint p;
  p.set_step(c.step);
  p.set_sha256(c.sha256);
  p.set_size_bytes(c.size_bytes);
  return p;
}

v1::DeviceInfo ToProto(const Device& d) {
  v1::DeviceInfo p;
  p.set_kind(d.kind);
  p.set_index(d.index);
  p.set_memory_bytes(d.memory_bytes);
  return p;
}

Device FromProto(const v1::DeviceInfo& p) { return {p.kind(), p.index(), p.memory_bytes()}; }

absl::StatusOr<Worker> FromProto(const v1::RegisterRequest& r) {
  if (r.worker_id().empty())
    return absl::InvalidArgumentError("register: worker_id is empty; start the worker with --name");
  if (r.incarnation().empty()) return absl::InvalidArgumentError("register: incarnation is empty");
  if (r.devices().empty())
    return absl::InvalidArgumentError("register: the worker reports no devices; check --devices");
  Worker w;
  w.id = r.worker_id();
  w.incarnation = r.incarnation();
  w.address = r.address();
  for (const auto& d : r.devices()) {
    if (d.kind() != "cpu" && d.kind() != "cuda")
      return absl::InvalidArgumentError(absl::StrCat("register: device kind '", d.kind(), "' is not cpu or cuda"));
    w.devices.push_back(FromProto(d));
  }
  if (r.rendezvous_port_first() != 0) w.rendezvous_port_first = r.rendezvous_port_first();
  if (r.rendezvous_port_count() != 0) w.rendezvous_port_count = r.rendezvous_port_count();
  if (w.rendezvous_port_first < 1 || w.rendezvous_port_count < 1 ||
      int64_t{w.rendezvous_port_first} + w.rendezvous_port_count - 1 > 65535)  // int64: no overflow (fuzzing)
    return absl::InvalidArgumentError(absl::StrCat("register: rendezvous ports ", w.rendezvous_port_first, " + ",
                                                   w.rendezvous_port_count,
                                                   " are not a range within 1-65535; check --rendezvous-ports"));
  return w;
}

v1::LogLine ToProto(const LogLine& l) {
  v1::LogLine p;
  p.set_seq(l.seq);
  p.set_rank(l.rank);
  p.set_text(l.text);
  return p;
}

}  // namespace polytune::coordinator
