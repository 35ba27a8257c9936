#include "worker_convert.h"

namespace polytune::worker {

v1::RegisterRequest ToProto(const Registration& r) {
  v1::RegisterRequest p;
  p.set_worker_id(r.worker_id);
  p.set_incarnation(r.incarnation);
  p.set_address(r.address);
  p.set_rendezvous_port_first(r.rendezvous_port_first);
  p.set_rendezvous_port_count(r.rendezvous_port_count);
  for (const auto& d : r.devices) {
    v1::DeviceInfo* info = p.add_devices();
    info->set_kind(d.kind);
    info->set_index(d.index);
    info->set_memory_bytes(d.memory_bytes);
  }
  return p;
}

v1::RankStatus ToProto(const RankReport& r) {
  v1::RankStatus p;
  p.set_job_id(r.job_id);
  p.set_rank(r.rank);
  p.set_phase(r.phase == RankReport::Phase::kExited ? v1::RankStatus::EXITED : v1::RankStatus::RUNNING);
  p.set_exit_code(r.exit_code);
  p.set_message(r.message);
  p.set_attempt(r.attempt);
  p.set_rendezvous_port_busy(r.rendezvous_port_busy);
  return p;
}

RankAssignment FromProto(const v1::RankAssignment& a) {
  RankAssignment r;
  r.job_id = a.job_id();
  r.rank = a.rank();
  r.world_size = a.world_size();
  r.master_addr = a.master_addr();
  r.master_port = a.master_port();
  r.spec_yaml = a.spec_yaml();
  r.attempt = a.attempt();
  return r;
}

Orders FromProto(const v1::HeartbeatResponse& r) {
  Orders o;
  for (const auto& a : r.start()) o.start.push_back(FromProto(a));
  o.cancel_jobs.assign(r.cancel_jobs().begin(), r.cancel_jobs().end());
  return o;
}

}  // namespace polytune::worker
