#include "worker_convert.h"

#include <gtest/gtest.h>

namespace polytune::worker {
namespace {

TEST(WorkerConvert, RegistrationAndReportsCarryEveryField) {
  Registration r{"w1", "inc", "10.0.0.2", {{"cuda", 1, 80LL << 30}, {"cpu", 0, 0}}, 29000, 50};
  v1::RegisterRequest p = ToProto(r);
  EXPECT_EQ(p.worker_id(), "w1");
  EXPECT_EQ(p.incarnation(), "inc");
  EXPECT_EQ(p.address(), "10.0.0.2");
  ASSERT_EQ(p.devices_size(), 2);
  EXPECT_EQ(p.devices(0).kind(), "cuda");
  EXPECT_EQ(p.devices(0).index(), 1);
  EXPECT_EQ(p.devices(0).memory_bytes(), 80LL << 30);
  EXPECT_EQ(p.rendezvous_port_first(), 29000);
  EXPECT_EQ(p.rendezvous_port_count(), 50);
  RankReport rep{"job-1", 3, RankReport::Phase::kExited, 137, "killed", 2, true};
  v1::RankStatus s = ToProto(rep);
  EXPECT_EQ(s.job_id(), "job-1");
  EXPECT_EQ(s.rank(), 3);
  EXPECT_EQ(s.phase(), v1::RankStatus::EXITED);
  EXPECT_EQ(s.exit_code(), 137);
  EXPECT_EQ(s.message(), "killed");
  EXPECT_EQ(s.attempt(), 2);
  EXPECT_TRUE(s.rendezvous_port_busy());
}

TEST(WorkerConvert, OrdersFromAHeartbeatReply) {
  v1::HeartbeatResponse resp;
  v1::RankAssignment* a = resp.add_start();
  a->set_job_id("job-7");
  a->set_rank(1);
  a->set_world_size(4);
  a->set_master_addr("10.0.0.1");
  a->set_master_port(29601);
  a->set_spec_yaml("model: {path: /m}\n");
  a->set_attempt(3);
  resp.add_cancel_jobs("job-2");
  Orders o = FromProto(resp);
  ASSERT_EQ(o.start.size(), 1u);
  EXPECT_EQ(o.start[0].job_id, "job-7");
  EXPECT_EQ(o.start[0].rank, 1);
  EXPECT_EQ(o.start[0].world_size, 4);
  EXPECT_EQ(o.start[0].master_addr, "10.0.0.1");
  EXPECT_EQ(o.start[0].master_port, 29601);
  EXPECT_EQ(o.start[0].spec_yaml, "model: {path: /m}\n");
  EXPECT_EQ(o.start[0].attempt, 3);
  EXPECT_EQ(o.cancel_jobs, std::vector<std::string>{"job-2"});
}

}  // namespace
}  // namespace polytune::worker
