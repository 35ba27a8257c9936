#include "polytune/rpc/rank_convert.h"

namespace polytune::rpc {

v1::RankAssignment ToProto(const RankAssignment& a) {
  v1::RankAssignment p;
  p.set_job_id(a.job_id);
  p.set_rank(a.rank);
  p.set_world_size(a.world_size);
  p.set_master_addr(a.master_addr);
  p.set_master_port(a.master_port);
  p.set_spec_yaml(a.spec_yaml);
  p.set_attempt(a.attempt);
  p.set_resume_checkpoint_sha256(a.resume_sha256);
  p.set_resume_step(a.resume_step);
  return p;
}

RankAssignment FromProto(const v1::RankAssignment& p) {
  return {p.job_id(),      p.rank(),      p.world_size(), p.master_addr(),
          p.master_port(), p.spec_yaml(), p.attempt(),    p.resume_checkpoint_sha256(),
          p.resume_step()};
}

v1::RankStatus ToProto(const RankReport& r) {
  v1::RankStatus p;
  p.set_job_id(r.job_id);
  p.set_rank(r.rank);
  p.set_phase(r.phase == RankReport::Phase::kExited    ? v1::RankStatus::EXITED
              : r.phase == RankReport::Phase::kRunning ? v1::RankStatus::RUNNING
                                                       : v1::RankStatus::STARTING);
  p.set_exit_code(r.exit_code);
  p.set_message(r.message);
  p.set_attempt(r.attempt);
  p.set_rendezvous_port_busy(r.rendezvous_port_busy);
  return p;
}

RankReport FromProto(const v1::RankStatus& s) {
  RankReport r;
  r.job_id = s.job_id();
  r.rank = s.rank();
  r.phase = s.phase() == v1::RankStatus::EXITED    ? RankReport::Phase::kExited
            : s.phase() == v1::RankStatus::RUNNING ? RankReport::Phase::kRunning
                                                   : RankReport::Phase::kStarting;
  r.exit_code = s.exit_code();
  r.message = s.message();
  r.attempt = s.attempt();
  r.rendezvous_port_busy = s.rendezvous_port_busy();
  return r;
}

}  // namespace polytune::rpc
