// The coordinator's JobService applies the job-spec rules itself, for clients other than our
// CLI, and serves metrics in pages.
#include <gtest/gtest.h>

#include <filesystem>

#include "polytune/common/clock.h"
#include "polytune/common/sha256.h"
#include "polytune/coordinator/grpc_services.h"

namespace polytune::coordinator {
namespace {

class SubmitTest : public ::testing::Test {
 protected:
  SubmitTest()
      : store_(MakeInMemoryStore()),
        jobs_(store_.get(), &clock_),
        dir_(MakeDir()),
        artifacts_(dir_),
        service_(&jobs_, store_.get(), &artifacts_),
        workers_(&jobs_, store_.get(), &artifacts_) {}
  ~SubmitTest() override { std::filesystem::remove_all(dir_); }

  static std::string MakeDir() {
    char t[] = "/tmp/polytune-submit-XXXXXX";
    return ::mkdtemp(t);
  }

  grpc::Status Submit(const std::string& yaml, v1::SubmitJobResponse* resp) {
    v1::SubmitJobRequest req;
    req.set_name("raw");
    req.set_spec_yaml(yaml);
    return service_.SubmitJob(nullptr, &req, resp);
  }

  FakeClock clock_;
  std::unique_ptr<Store> store_;
  JobManager jobs_;
  std::string dir_;
  ArtifactStore artifacts_;
  JobServiceImpl service_;
  WorkerServiceImpl workers_;
};

TEST_F(SubmitTest, SpecWithAnUnknownKeyFromARawClientIsRefusedNamingIt) {
  v1::SubmitJobResponse resp;
  grpc::Status st = Submit(
      "model: {path: /m}\ndata: {train: /t}\ntraining: {lr: 0.1, learning_rate: 2}\nresources: {world_size: 1}\n",
      &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("submitted spec:3: 'training.learning_rate' is not a known key"), std::string::npos)
      << st.error_message();
  EXPECT_TRUE(jobs_.List().empty()) << "nothing was queued";
  st = Submit("model: {path: /m}\ndata: {train: /t}\n", &resp);
  EXPECT_NE(st.error_message().find("'resources.world_size' is required"), std::string::npos) << st.error_message();
  st = Submit("model: {path: m}\ndata: {train: /t}\nresources: {world_size: 1}\n", &resp);
  EXPECT_NE(st.error_message().find("'model.path' must be an absolute path"), std::string::npos) << st.error_message();
}

TEST_F(SubmitTest, ArtifactsMustBeUploadedFirstAndTheStoredSpecIsCanonical) {
  const std::string data = "{\"text\": \"hallo\"}\n";
  const std::string sha = Sha256Hex(data);
  const std::string yaml = "model: {path: /m}\ndata: {train: {sha256: " + sha + "}}\nresources: {world_size: 2}\n";
  v1::SubmitJobResponse resp;
  grpc::Status st = Submit(yaml, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("'data.train' names artifact " + sha + ", which was never uploaded"),
            std::string::npos)
      << st.error_message();
  ASSERT_TRUE(artifacts_.Put(data, sha).ok());
  st = Submit(yaml, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.job().world_size(), 2);
  EXPECT_NE(resp.job().spec_yaml().find("max_steps: 0"), std::string::npos) << "defaults written out";
  EXPECT_NE(resp.job().spec_yaml().find(sha), std::string::npos);
}

TEST_F(SubmitTest, MetricsArePagedByTheirSequence) {
  v1::SubmitJobResponse resp;
  // Metrics are taken from the placement that runs the job: a worker, then a placed job.
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  reg.set_incarnation("inc");
  reg.add_devices()->set_kind("cpu");
  v1::RegisterResponse reg_resp;
  ASSERT_TRUE(workers_.Register(nullptr, &reg, &reg_resp).ok());
  ASSERT_TRUE(Submit("model: {path: /m}\ndata: {train: /t}\nresources: {world_size: 1}\n", &resp).ok());
  const std::string id = resp.job().id();
  ASSERT_EQ(resp.job().attempt(), 1);
  v1::ReportMetricsRequest report;
  report.set_job_id(id);
  report.set_attempt(1);
  for (int step = 1; step <= 3; ++step) report.add_records()->mutable_step()->set_step(step);
  report.add_records()->mutable_eval()->set_step(3);
  v1::ReportMetricsResponse ignored;
  ASSERT_TRUE(workers_.ReportMetrics(nullptr, &report, &ignored).ok());
  v1::GetMetricsRequest get;
  get.set_id(id);
  v1::GetMetricsResponse all;
  ASSERT_TRUE(service_.GetMetrics(nullptr, &get, &all).ok());
  ASSERT_EQ(all.records_size(), 4);
  EXPECT_TRUE(all.records(3).has_eval());
  get.set_after_seq(all.records(1).seq());
  v1::GetMetricsResponse rest;
  ASSERT_TRUE(service_.GetMetrics(nullptr, &get, &rest).ok());
  ASSERT_EQ(rest.records_size(), 2) << "only what is new";
  EXPECT_EQ(rest.records(0).step().step(), 3);
  EXPECT_EQ(rest.records(0).attempt(), 1);
  // The same batch again (its reply was lost) and a batch of a superseded placement change
  // nothing.
  ASSERT_TRUE(workers_.ReportMetrics(nullptr, &report, &ignored).ok());
  v1::ReportMetricsRequest stale = report;
  stale.set_attempt(0);
  stale.clear_records();
  stale.add_records()->mutable_step()->set_step(4);
  ASSERT_TRUE(workers_.ReportMetrics(nullptr, &stale, &ignored).ok());
  v1::GetMetricsResponse again;
  get.set_after_seq(0);
  ASSERT_TRUE(service_.GetMetrics(nullptr, &get, &again).ok());
  EXPECT_EQ(again.records_size(), 4);
  v1::ReportMetricsRequest bad;
  bad.set_job_id(id);
  bad.add_records();  // neither step nor eval
  EXPECT_EQ(workers_.ReportMetrics(nullptr, &bad, &ignored).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace polytune::coordinator
