#include "polytune/coordinator/proto_convert.h"

#include <gtest/gtest.h>

namespace polytune::coordinator {
namespace {

TEST(ProtoConvert, JobRoundTripsThroughProtoAndWireBytes) {
  Job j;
  j.id = "job-000007";
  j.name = "de-finance";
  j.priority = 2;
  j.world_size = 4;
  j.spec_yaml = "model: {path: /m}\n";
  j.state = JobState::kPending;
  j.reason = "needs 4 devices; the largest free gang is 2";
  j.submitted_micros = 42;
  j.assigned_workers = {"a", "b"};
  j.master_port = 29601;
  j.attempt = 3;
  j.events = {{1, JobState::kPending, "submitted"}};
  std::string wire;
  ASSERT_TRUE(ToProto(j).SerializeToString(&wire));
  v1::Job parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  auto back = FromProto(parsed);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id, j.id);
  EXPECT_EQ(back->name, j.name);
  EXPECT_EQ(back->priority, 2);
  EXPECT_EQ(back->world_size, 4);
  EXPECT_EQ(back->spec_yaml, j.spec_yaml);
  EXPECT_EQ(back->state, JobState::kPending);
  EXPECT_EQ(back->reason, j.reason);
  EXPECT_EQ(back->submitted_micros, 42);
  EXPECT_EQ(back->assigned_workers, j.assigned_workers);
  EXPECT_EQ(back->master_port, 29601);
  EXPECT_EQ(back->attempt, 3);
  ASSERT_EQ(back->events.size(), 1u);
  EXPECT_EQ(back->events[0].reason, "submitted");
}

TEST(ProtoConvert, RankStatusAndAssignmentCarryTheAttempt) {
  v1::RankStatus s;
  s.set_job_id("job-000001");
  s.set_rank(1);
  s.set_phase(v1::RankStatus::EXITED);
  s.set_exit_code(2);
  s.set_message("rendezvous port 29600 is taken");
  s.set_attempt(4);
  s.set_rendezvous_port_busy(true);
  RankReport r = FromProto(s);
  EXPECT_EQ(r.job_id, "job-000001");
  EXPECT_EQ(r.rank, 1);
  EXPECT_EQ(r.phase, RankReport::Phase::kExited);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.message, "rendezvous port 29600 is taken");
  EXPECT_EQ(r.attempt, 4);
  EXPECT_TRUE(r.rendezvous_port_busy);
  s.set_phase(v1::RankStatus::RUNNING);
  EXPECT_EQ(FromProto(s).phase, RankReport::Phase::kRunning);
  v1::RankAssignment a = ToProto(RankAssignment{"job-000002", 0, 2, "10.0.0.1", 29605, "spec", 7});
  EXPECT_EQ(a.job_id(), "job-000002");
  EXPECT_EQ(a.world_size(), 2);
  EXPECT_EQ(a.master_addr(), "10.0.0.1");
  EXPECT_EQ(a.master_port(), 29605);
  EXPECT_EQ(a.spec_yaml(), "spec");
  EXPECT_EQ(a.attempt(), 7);
}

TEST(ProtoConvert, EveryStateMapsBothWays) {
  for (JobState s : {JobState::kPending, JobState::kScheduled, JobState::kRunning, JobState::kSucceeded,
                     JobState::kFailed, JobState::kCancelled})
    EXPECT_EQ(*FromProto(ToProto(s)), s);
  EXPECT_FALSE(FromProto(v1::JOB_STATE_UNSPECIFIED).ok());
}

TEST(ProtoConvert, RegistrationIsValidated) {
  v1::RegisterRequest r;
  r.set_worker_id("w1");
  r.set_incarnation("abc");
  r.set_address("10.1.2.3");
  auto* d = r.add_devices();
  d->set_kind("cuda");
  d->set_index(1);
  d->set_memory_bytes(141LL << 30);
  auto w = FromProto(r);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->slots(), 1);
  EXPECT_EQ(w->devices[0].memory_bytes, 141LL << 30);
  EXPECT_EQ(w->rendezvous_port_first, 29600) << "unset ports take the default range";
  EXPECT_EQ(w->rendezvous_port_count, 100);
  r.set_rendezvous_port_first(65530);
  r.set_rendezvous_port_count(10);
  EXPECT_NE(FromProto(r).status().message().find("--rendezvous-ports"), std::string::npos);
  r.set_rendezvous_port_first(2147483580);  // found by fuzzing: first + count overflowed int
  r.set_rendezvous_port_count(100);
  EXPECT_NE(FromProto(r).status().message().find("--rendezvous-ports"), std::string::npos);
  r.set_rendezvous_port_first(31000);
  r.set_rendezvous_port_count(4);
  EXPECT_EQ(FromProto(r)->rendezvous_port_first, 31000);
  d->set_kind("tpu");
  EXPECT_NE(FromProto(r).status().message().find("'tpu'"), std::string::npos);
  r.clear_devices();
  EXPECT_NE(FromProto(r).status().message().find("no devices"), std::string::npos);
  r.set_worker_id("");
  EXPECT_NE(FromProto(r).status().message().find("--name"), std::string::npos);
}

}  // namespace
}  // namespace polytune::coordinator
