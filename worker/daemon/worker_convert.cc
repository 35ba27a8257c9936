#include "worker_convert.h"

namespace polytune::worker {

v1::RegisterRequest ToProto(const Registration& r, const std::vector<RankReport>& ranks) {
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
  for (const auto& rank : ranks) *p.add_ranks() = ToProto(rank);
  return p;
}

Orders FromProto(const v1::HeartbeatResponse& r) {
  Orders o;
  for (const auto& a : r.start()) o.start.push_back(FromProto(a));
  o.cancel_jobs.assign(r.cancel_jobs().begin(), r.cancel_jobs().end());
  o.preempt_jobs.assign(r.preempt_jobs().begin(), r.preempt_jobs().end());
  return o;
}

}  // namespace polytune::worker
