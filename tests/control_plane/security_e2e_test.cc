// A real polytune-coordinator with TLS and bearer tokens, attacked with raw gRPC clients:
// every RPC of both services refuses a missing token and a wrong role, users reach only their
// own jobs and data, workers act only for themselves, and TLS refuses clients that do not
// trust it (or, with mTLS, that present no certificate).
#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>

#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"
#include "polytune/coordinator/access.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/security.h"
#include "polytune/v1/polytune.grpc.pb.h"
#include "process_util.h"

namespace polytune {
namespace {

namespace fs = std::filesystem;
using coordinator::Role;
using testing::kBin;
using testing::kBuild;
using testing::Shell;
using testing::ShellResult;
const std::string kScripts = POLYTUNE_SCRIPTS;

class Security : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char t[] = "/tmp/polytune-sec-XXXXXX";
    dir_ = ::mkdtemp(t);
    ShellResult certs = Shell("bash " + kScripts + "/make-dev-certs.sh " + dir_ + "/certs");
    ASSERT_EQ(certs.code, 0) << certs.output;
    std::ofstream auth(dir_ + "/auth.yaml");
    auth << "principals:\n";
    for (const auto& [name, role] : std::vector<std::pair<std::string, std::string>>{{"root", "admin"},
                                                                                     {"alice", "user"},
                                                                                     {"bob", "user"},
                                                                                     {"auditor", "viewer"},
                                                                                     {"worker1", "worker"},
                                                                                     {"worker2", "worker"}}) {
      tokens_[name] = name + "-token-" + std::to_string(::getpid());
      auth << "  - {name: " << name << ", role: " << role << ", token_sha256: " << Sha256Hex(tokens_[name]) << "}\n";
    }
    auth.close();
    target_ = "127.0.0.1:" + std::to_string(testing::FreePort());
    coordinator_ = Start(target_, "coord", {});
    ASSERT_TRUE(WaitServing(target_, Ca())) << Log("coord");
  }

  static void TearDownTestSuite() {
    ::kill(coordinator_, SIGTERM);
    ::waitpid(coordinator_, nullptr, 0);
    fs::remove_all(dir_);
  }

  static pid_t Start(const std::string& target, const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> argv = {kBuild + "/coordinator/polytune-coordinator",
                                     "--listen",
                                     target,
                                     "--data-dir",
                                     dir_ + "/" + name,
                                     "--metrics-listen",
                                     ""};
    for (const auto& flag : testing::SecuredCoordinatorFlags(dir_)) argv.push_back(flag);
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::Spawn(argv, dir_ + "/" + name + ".log");
  }

  static std::string Log(const std::string& name) {
    auto text = ReadFileToString(dir_ + "/" + name + ".log");
    return text.ok() ? *text : "";
  }

  static rpc::ClientSecurity Ca(bool client_cert = false) {
    auto s = rpc::LoadClientSecurity(dir_ + "/certs/ca.pem", client_cert ? dir_ + "/certs/client.pem" : "",
                                     client_cert ? dir_ + "/certs/client.key" : "", "", "", true);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : rpc::ClientSecurity{};
  }

  static std::shared_ptr<grpc::Channel> Channel(const std::string& target, const rpc::ClientSecurity& security) {
    rpc::SetClientSecurity(security);
    auto ch = rpc::MakeChannel(target);
    rpc::SetClientSecurity({});
    return ch;
  }

  static grpc::Status Call(const std::shared_ptr<grpc::Channel>& ch, const std::string& method,
                           const std::string& token) {
    return testing::RawCall(ch, method, token);
  }

  static bool WaitServing(const std::string& target, const rpc::ClientSecurity& security) {
    auto ch = Channel(target, security);
    for (int i = 0; i < 100; ++i) {
      if (Call(ch, "/polytune.v1.JobService/ListJobs", tokens_["root"]).ok()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  static std::unique_ptr<grpc::ClientContext> As(const std::string& who) {
    auto ctx = rpc::ContextWithDeadline(10);
    ctx->AddMetadata("authorization", "Bearer " + tokens_[who]);
    return ctx;
  }

  static inline std::string dir_, target_;
  static inline pid_t coordinator_ = -1;
  static inline std::map<std::string, std::string> tokens_;
};

TEST_F(Security, EveryRpcRefusesAMissingTokenAndAWrongRoleAndServesTheRightOne) {
  auto ch = Channel(target_, Ca());
  const std::map<Role, std::string> holder = {
      {Role::kAdmin, "root"}, {Role::kUser, "alice"}, {Role::kViewer, "auditor"}, {Role::kWorker, "worker1"}};
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  int calls = 0;
  for (const char* service : {"polytune.v1.JobService", "polytune.v1.WorkerService"}) {
    const auto* s = pool->FindServiceByName(service);
    ASSERT_NE(s, nullptr);
    for (int i = 0; i < s->method_count(); ++i) {
      const std::string method = "/" + std::string(service) + "/" + s->method(i)->name();
      EXPECT_EQ(Call(ch, method, "").error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
      EXPECT_EQ(Call(ch, method, "not-a-token").error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
      for (const auto& [role, who] : holder) {
        const grpc::Status st = Call(ch, method, tokens_.at(who));
        ++calls;
        if (!coordinator::MayCall(role, method)) {
          EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << method << " as " << who;
          continue;
        }
        EXPECT_NE(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method << " as " << who;
        // (A user downloading an artifact of no one's is an ownership refusal, tested below.)
        if (!(role == Role::kUser && method == "/polytune.v1.JobService/Download"))
          EXPECT_NE(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
              << method << " as " << who << ": " << st.error_message();
      }
    }
  }
  EXPECT_GE(calls, 17 * 4);
}

TEST_F(Security, UsersReachOnlyTheirOwnJobsAndDataAndViewersOnlyRead) {
  auto stub = v1::JobService::NewStub(Channel(target_, Ca()));
  // alice uploads a dataset and submits a job that trains on it.
  const std::string data = "{\"text\": \"historia clínica\"}\n";
  v1::UploadArtifactResponse up;
  {
    auto ctx = As("alice");
    auto w = stub->UploadArtifact(ctx.get(), &up);
    v1::UploadArtifactChunk c;
    c.set_sha256(Sha256Hex(data));
    c.set_data(data);
    ASSERT_TRUE(w->Write(c));
    w->WritesDone();
    ASSERT_TRUE(w->Finish().ok());
  }
  const std::string spec = "model: {path: /models/m}\ndata: {train: {sha256: " + up.sha256() +
                           ", name: notes.jsonl}}\nresources: {world_size: 1}\n";
  v1::SubmitJobRequest submit;
  submit.set_spec_yaml(spec);
  v1::SubmitJobResponse job;
  ASSERT_TRUE(stub->SubmitJob(As("alice").get(), submit, &job).ok());
  EXPECT_EQ(job.job().owner(), "alice");
  const std::string id = job.job().id();
  v1::GetJobRequest get;
  get.set_id(id);
  v1::GetJobResponse got;
  EXPECT_TRUE(stub->GetJob(As("alice").get(), get, &got).ok());
  EXPECT_TRUE(stub->GetJob(As("auditor").get(), get, &got).ok()) << "a viewer reads everything";
  grpc::Status bob_reads = stub->GetJob(As("bob").get(), get, &got);
  EXPECT_EQ(bob_reads.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(bob_reads.error_message().find("belongs to another user"), std::string::npos) << bob_reads.error_message();
  v1::GetMetricsRequest metrics;
  metrics.set_id(id);
  v1::GetMetricsResponse m;
  EXPECT_EQ(stub->GetMetrics(As("bob").get(), metrics, &m).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::GetLogsRequest logs;
  logs.set_id(id);
  v1::GetLogsResponse l;
  EXPECT_EQ(stub->GetLogs(As("bob").get(), logs, &l).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::ListJobsResponse bobs;
  ASSERT_TRUE(stub->ListJobs(As("bob").get(), v1::ListJobsRequest(), &bobs).ok());
  for (const auto& j : bobs.jobs()) EXPECT_NE(j.id(), id) << "bob's list holds only bob's jobs";
  // Nobody else downloads alice's data, or trains on it to read it through a job.
  v1::DownloadRequest dl;
  dl.set_sha256(up.sha256());
  {
    auto ctx = As("bob");  // a streaming call uses its context until Finish
    auto reader = stub->Download(ctx.get(), dl);
    v1::DownloadChunk chunk;
    EXPECT_FALSE(reader->Read(&chunk));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    auto ctx = As("alice");
    auto reader = stub->Download(ctx.get(), dl);
    v1::DownloadChunk chunk;
    ASSERT_TRUE(reader->Read(&chunk));
    EXPECT_EQ(chunk.data(), data);
  }
  v1::SubmitJobResponse stolen;
  EXPECT_EQ(stub->SubmitJob(As("bob").get(), submit, &stolen).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Only alice (or an admin) cancels it; a viewer changes nothing.
  v1::CancelJobRequest cancel;
  cancel.set_id(id);
  v1::CancelJobResponse cancelled;
  EXPECT_EQ(stub->CancelJob(As("bob").get(), cancel, &cancelled).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stub->CancelJob(As("auditor").get(), cancel, &cancelled).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(stub->CancelJob(As("alice").get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.job().state(), v1::CANCELLED);
}

TEST_F(Security, WorkersActOnlyForThemselvesAndTheirOwnRanks) {
  auto jobs = v1::JobService::NewStub(Channel(target_, Ca()));
  auto workers = v1::WorkerService::NewStub(Channel(target_, Ca()));
  v1::RegisterRequest reg;
  reg.set_worker_id("gpu-node-1");
  reg.set_incarnation("inc-a");
  reg.add_devices()->set_kind("cpu");
  v1::RegisterResponse ok;
  ASSERT_TRUE(workers->Register(As("worker1").get(), reg, &ok).ok());
  // Another worker principal cannot take over the live worker's name...
  v1::RegisterRequest takeover = reg;
  takeover.set_incarnation("inc-evil");
  EXPECT_EQ(workers->Register(As("worker2").get(), takeover, &ok).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // ... nor heartbeat for it (which could report its ranks as exited).
  v1::HeartbeatRequest beat;
  beat.set_worker_id("gpu-node-1");
  beat.set_incarnation("inc-a");
  v1::HeartbeatResponse orders;
  EXPECT_EQ(workers->Heartbeat(As("worker2").get(), beat, &orders).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(workers->Heartbeat(As("worker1").get(), beat, &orders).ok());
  // A job placed on gpu-node-1; worker2 (registered as its own node) may not report on it.
  v1::SubmitJobRequest submit;
  submit.set_spec_yaml("model: {path: /models/m}\ndata: {train: /data/t.jsonl}\nresources: {world_size: 1}\n");
  v1::SubmitJobResponse job;
  ASSERT_TRUE(jobs->SubmitJob(As("alice").get(), submit, &job).ok());
  const std::string id = job.job().id();
  v1::RegisterRequest reg2 = reg;
  reg2.set_worker_id("gpu-node-2");
  reg2.set_incarnation("inc-b");
  ASSERT_TRUE(workers->Register(As("worker2").get(), reg2, &ok).ok());
  v1::GetJobRequest get;
  get.set_id(id);
  v1::GetJobResponse got;
  ASSERT_TRUE(jobs->GetJob(As("root").get(), get, &got).ok());
  ASSERT_EQ(got.job().assigned_workers_size(), 1);
  ASSERT_EQ(got.job().assigned_workers(0), "gpu-node-1");
  v1::ReportMetricsRequest inject;
  inject.set_job_id(id);
  inject.set_attempt(got.job().attempt());
  inject.set_worker_id("gpu-node-2");
  inject.set_incarnation("inc-b");
  inject.add_records()->mutable_step()->set_step(1);
  v1::ReportMetricsResponse r;
  EXPECT_EQ(workers->ReportMetrics(As("worker2").get(), inject, &r).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  inject.set_worker_id("gpu-node-1");  // posing as the right node with its own token
  inject.set_incarnation("inc-a");
  EXPECT_EQ(workers->ReportMetrics(As("worker2").get(), inject, &r).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::ReportLogsRequest lines;
  lines.set_job_id(id);
  lines.set_worker_id("gpu-node-2");
  lines.set_incarnation("inc-b");
  lines.add_lines("loss 0.0 (forged)");
  v1::ReportLogsResponse lr;
  EXPECT_EQ(workers->ReportLogs(As("worker2").get(), lines, &lr).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  {
    const std::string bundle = "forged adapter";
    v1::UploadCheckpointResponse cr;
    auto ctx = As("worker2");
    auto w = workers->UploadCheckpoint(ctx.get(), &cr);
    v1::UploadCheckpointChunk c;
    c.set_job_id(id);
    c.set_step(99);
    c.set_sha256(Sha256Hex(bundle));
    c.set_attempt(got.job().attempt());
    c.set_worker_id("gpu-node-2");
    c.set_incarnation("inc-b");
    c.set_data(bundle);
    w->Write(c);
    w->WritesDone();
    EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // The worker the job runs on reports fine.
  inject.set_worker_id("gpu-node-1");
  EXPECT_TRUE(workers->ReportMetrics(As("worker1").get(), inject, &r).ok());
  ASSERT_TRUE(jobs->GetJob(As("root").get(), get, &got).ok());
  EXPECT_TRUE(got.checkpoints().empty()) << "no forged checkpoint was recorded";
}

TEST_F(Security, TlsRefusesClientsThatDoNotTrustItAndMtlsRefusesClientsWithoutCertificates) {
  // Plaintext against TLS, and TLS trusting another CA: no connection.
  EXPECT_EQ(Call(Channel(target_, {}), "/polytune.v1.JobService/ListJobs", tokens_["root"]).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  ShellResult other = Shell("bash " + kScripts + "/make-dev-certs.sh " + dir_ + "/other");
  ASSERT_EQ(other.code, 0) << other.output;
  rpc::ClientSecurity wrong = *rpc::LoadClientSecurity(dir_ + "/other/ca.pem", "", "", "", "", true);
  EXPECT_EQ(Call(Channel(target_, wrong), "/polytune.v1.JobService/ListJobs", tokens_["root"]).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // mTLS: the client must present a certificate the client CA signed.
  const std::string mtls = "127.0.0.1:" + std::to_string(testing::FreePort());
  const pid_t pid = Start(mtls, "mtls", {"--tls-client-ca", dir_ + "/certs/ca.pem"});
  ASSERT_TRUE(WaitServing(mtls, Ca(/*client_cert=*/true))) << Log("mtls");
  EXPECT_EQ(Call(Channel(mtls, Ca(false)), "/polytune.v1.JobService/ListJobs", tokens_["root"]).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Call(Channel(mtls, Ca(true)), "/polytune.v1.JobService/ListJobs", tokens_["root"]).ok());
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
}

TEST_F(Security, OversizeUploadsFullStorageHugeSpecsAndReportsAreRefusedAndLeaveNothing) {
  const std::string target = "127.0.0.1:" + std::to_string(testing::FreePort());
  const pid_t pid = Start(target, "limited",
                          {"--max-artifact-bytes", "1M", "--max-storage-bytes", "2500K", "--min-free-disk-bytes", "0"});
  ASSERT_TRUE(WaitServing(target, Ca())) << Log("limited");
  auto stub = v1::JobService::NewStub(Channel(target, Ca()));
  auto upload = [&](const std::string& data) {
    auto ctx = As("alice");
    v1::UploadArtifactResponse resp;
    auto w = stub->UploadArtifact(ctx.get(), &resp);
    for (size_t pos = 0; pos < data.size(); pos += rpc::kMaxChunkBytes / 2) {
      v1::UploadArtifactChunk c;
      c.set_sha256(Sha256Hex(data));
      c.set_data(data.substr(pos, rpc::kMaxChunkBytes / 2));
      if (!w->Write(c)) break;  // the server already refused
    }
    w->WritesDone();
    return w->Finish();
  };
  const std::string stored = dir_ + "/limited/artifacts/sha256";
  auto files = [&] {
    int n = 0;
    std::error_code ec;
    for (auto it = fs::directory_iterator(stored, ec); !ec && it != fs::directory_iterator(); ++it) ++n;
    return n;
  };
  grpc::Status big = upload(std::string(1536 << 10, 'x'));
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(big.error_message().find("--max-artifact-bytes 1048576"), std::string::npos) << big.error_message();
  EXPECT_EQ(files(), 0) << "a refused upload leaves nothing behind";
  ASSERT_TRUE(upload(std::string(900 << 10, 'a')).ok());
  ASSERT_TRUE(upload(std::string(900 << 10, 'b')).ok());
  grpc::Status full = upload(std::string(900 << 10, 'c'));
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.error_message().find("--max-storage-bytes 2560000 (1843200 bytes stored)"), std::string::npos)
      << full.error_message();
  EXPECT_EQ(files(), 2);
  // A spec the size of a dataset, and reports over the per-call limits, are refused whole.
  v1::SubmitJobRequest submit;
  submit.set_spec_yaml("model: {path: /m}\n# " + std::string(300 << 10, 'y') + "\n");
  v1::SubmitJobResponse job;
  grpc::Status huge = stub->SubmitJob(As("alice").get(), submit, &job);
  EXPECT_EQ(huge.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(huge.error_message().find("at most 262144 are accepted"), std::string::npos) << huge.error_message();
  auto workers = v1::WorkerService::NewStub(Channel(target, Ca()));
  v1::ReportMetricsRequest metrics;
  metrics.set_job_id("job-1");
  for (int i = 0; i < 2001; ++i) metrics.add_records()->mutable_step()->set_step(i);
  v1::ReportMetricsResponse mresp;
  grpc::Status many = workers->ReportMetrics(As("root").get(), metrics, &mresp);
  EXPECT_EQ(many.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(many.error_message().find("2001 metrics records in one call; at most 2000"), std::string::npos)
      << many.error_message();
  v1::ReportLogsRequest logs;
  logs.set_job_id("job-1");
  for (int i = 0; i < 2001; ++i) logs.add_lines("line");
  v1::ReportLogsResponse lresp;
  EXPECT_EQ(workers->ReportLogs(As("root").get(), logs, &lresp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A message over the transport's limit never reaches a handler.
  v1::ReportLogsRequest fat;
  fat.set_job_id("job-1");
  fat.add_lines(std::string(rpc::kMaxMessageBytes + 1, 'z'));
  EXPECT_EQ(workers->ReportLogs(As("root").get(), fat, &lresp).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
}

TEST_F(Security, SecureByDefaultAndTheCliSpeaksTlsWithTokens) {
  // No tokens or TLS on a reachable address: refused, saying what to do.
  ShellResult open = Shell("timeout 10 " + kBuild + "/coordinator/polytune-coordinator --listen 0.0.0.0:" +
                           std::to_string(testing::FreePort()) + " --data-dir " + dir_ + "/open --metrics-listen ''");
  EXPECT_EQ(open.code, 2) << open.output;
  EXPECT_NE(open.output.find("refusing to serve 0.0.0.0:"), std::string::npos) << open.output;
  EXPECT_NE(open.output.find("--insecure"), std::string::npos) << open.output;
  // The CLI: a token from the environment or a file, TLS from POLYTUNE_TLS_CA.
  const std::string env = "POLYTUNE_TLS_CA=" + dir_ + "/certs/ca.pem HOME=" + dir_ + " ";
  ShellResult none = Shell(env + kBin + " --coordinator " + target_ + " jobs");
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.output.find("no token: set POLYTUNE_TOKEN or --token-file"), std::string::npos) << none.output;
  ShellResult with =
      Shell(env + "POLYTUNE_TOKEN=" + tokens_["alice"] + " " + kBin + " --coordinator " + target_ + " jobs --json");
  EXPECT_EQ(with.code, 0) << with.output;
  std::ofstream(dir_ + "/viewer.token") << tokens_["auditor"] << "\n";
  ShellResult viewer = Shell(env + kBin + " --coordinator " + target_ + " --token-file " + dir_ +
                             "/viewer.token workers drain gpu-node-1");
  EXPECT_EQ(viewer.code, 1);
  EXPECT_NE(viewer.output.find("auditor (role viewer) may not call DrainWorker"), std::string::npos) << viewer.output;
  // `polytune auth token` prints a token and the line that admits it (its hash only).
  ShellResult made = Shell(kBin + " auth token --name carol --role user");
  ASSERT_EQ(made.code, 0) << made.output;
  const std::string token = made.output.substr(0, 64);
  EXPECT_NE(made.output.find("- {name: carol, role: user, token_sha256: " + Sha256Hex(token) + "}"), std::string::npos)
      << made.output;
  EXPECT_NE(Shell(kBin + " auth token --name carol --role root").code, 0);
}

}  // namespace
}  // namespace polytune
