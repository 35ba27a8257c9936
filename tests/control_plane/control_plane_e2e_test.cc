// End to end on loopback with real processes: polytune-coordinator, two polytune-worker
// daemons (one CPU device each) and the polytune CLI.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <grpcpp/generic/generic_stub.h>

#include <ATen/ATen.h>

#include "../engine/test_util.h"
#include "nlohmann/json.hpp"
#include "polytune/common/sha256.h"
#include "polytune/engine/safetensors.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/security.h"
#include "polytune/v1/polytune.grpc.pb.h"
#include "process_util.h"

namespace polytune {
namespace {

namespace fs = std::filesystem;
using testing::kBin;
using testing::kBuild;
const std::string kExamples = POLYTUNE_EXAMPLES;

using Result = testing::ShellResult;
using testing::Shell;

using testing::FreePort;
using testing::Spawn;

// Ranks of `job` still running anywhere on this machine.
int RunningRanks(const std::string& job) {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::ifstream in(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find("/jobs/" + job + "/") != std::string::npos && cmd.find("train") != std::string::npos) ++n;
  }
  return n;
}

class ControlPlane : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char t[] = "/tmp/polytune-cp-XXXXXX";
    dir_ = ::mkdtemp(t);
    port_ = FreePort();
    target_ = "127.0.0.1:" + std::to_string(port_);
    // Below Linux's ephemeral range (32768+), so outgoing connections never sit in it.
    rendezvous_first_ = 20000 + static_cast<int>(::getpid() % 900) * 10;
    // The cluster runs as in production: TLS, and a token for everyone (an admin for the
    // tests' CLI and raw clients, one worker principal for the daemons).
    Result certs = Shell("bash " + std::string(POLYTUNE_SCRIPTS) + "/make-dev-certs.sh " + dir_ + "/certs");
    ASSERT_EQ(certs.code, 0) << certs.output;
    admin_token_ = "admin-" + std::to_string(::getpid());
    const std::string worker_token = "worker-" + std::to_string(::getpid());
    std::ofstream(dir_ + "/auth.yaml") << "principals:\n  - {name: ops, role: admin, token_sha256: "
                                       << Sha256Hex(admin_token_)
                                       << "}\n  - {name: nodes, role: worker, token_sha256: " << Sha256Hex(worker_token)
                                       << "}\n";
    std::ofstream(dir_ + "/worker.token") << worker_token << "\n";
    auto security = rpc::LoadClientSecurity(dir_ + "/certs/ca.pem", "", "", admin_token_, "", true);
    ASSERT_TRUE(security.ok()) << security.status();
    rpc::SetClientSecurity(*security);  // the raw clients below
    coordinator_ = Spawn(CoordinatorArgv(), dir_ + "/coord.log");
    for (int i = 1; i <= 2; ++i) workers_.push_back(Spawn(WorkerArgv(i), dir_ + "/w" + std::to_string(i) + ".log"));
    Result init = Shell(kBin + " model init --out " + dir_ +
                        "/model --hidden-size 64 --layers 2 --heads 4 --kv-heads 2 "
                        "--intermediate-size 128 --vocab-size 320 --seed 5");
    ASSERT_EQ(init.code, 0) << init.output;
    for (int i = 0; i < 100; ++i) {
      Result w = Cli("workers --json");
      if (w.code == 0 && nlohmann::json::parse(w.output).size() == 2) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "workers did not register";
  }

  static void TearDownTestSuite() {
    for (pid_t p : workers_) ::kill(p, SIGTERM);
    for (pid_t p : workers_) ::waitpid(p, nullptr, 0);
    ::kill(coordinator_, SIGTERM);
    ::waitpid(coordinator_, nullptr, 0);
    fs::remove_all(dir_);
  }

  // The CLI as a user sets it up: TLS CA and token from the environment.
  static std::string CliEnv() {
    return "POLYTUNE_TLS_CA=" + dir_ + "/certs/ca.pem POLYTUNE_TOKEN=" + admin_token_ + " ";
  }
  static Result Cli(const std::string& args) {
    return Shell(CliEnv() + kBin + " --coordinator " + target_ + " " + args);
  }
  static std::vector<std::string> CoordinatorArgv() {
    std::vector<std::string> argv = {kBuild + "/coordinator/polytune-coordinator",
                                     "--listen",
                                     target_,
                                     "--data-dir",
                                     dir_ + "/coord",
                                     "--heartbeat-timeout",
                                     "5s",
                                     "--metrics-listen",
                                     "127.0.0.1:0"};
    for (const auto& flag : testing::SecuredCoordinatorFlags(dir_)) argv.push_back(flag);
    return argv;
  }
  static std::vector<std::string> WorkerArgv(int i) {
    const std::string name = "w" + std::to_string(i);
    return {kBuild + "/worker/daemon/polytune-worker",
            "--coordinator",
            target_,
            "--work-dir",
            dir_ + "/" + name,
            "--devices",
            "cpu:1",
            "--name",
            name,
            "--polytune-bin",
            kBin,
            "--rendezvous-ports",
            std::to_string(rendezvous_first_) + "-" + std::to_string(rendezvous_first_ + 9),
            "--metrics-listen",
            "127.0.0.1:0",
            "--token-file",
            dir_ + "/worker.token",
            "--tls-ca",
            dir_ + "/certs/ca.pem"};
  }

  static std::string Spec(const std::string& name, const std::string& training, int world = 2) {
    const std::string path = dir_ + "/" + name + ".yaml";
    std::ofstream(path) << "model: {path: " << dir_ << "/model}\n"
                        << "lora: {r: 4, alpha: 8, dropout: 0.1}\n"
                        << "data: {train: " << kExamples << "/data/instructions_train.jsonl, eval: " << kExamples
                        << "/data/instructions_eval.jsonl, max_seq_len: 128}\n"
                        << "training: {lr: 0.002, seed: 3, " << training << "}\n"
                        << "resources: {world_size: " << world << "}\n";
    return path;
  }

  struct Watched {
    std::string id;
    Result watch;           // `polytune watch`, which returns when the job ends
    nlohmann::json status;  // `polytune status --json` after that (discarded if it failed)
  };
  // Submits `spec`, watches the job to its end and reads its status.
  static Watched SubmitAndWatch(const std::string& spec) {
    Watched w;
    Result submit = Cli("submit " + spec + " --json");
    EXPECT_EQ(submit.code, 0) << submit.output;
    if (submit.code != 0) return w;
    w.id = nlohmann::json::parse(submit.output)["id"];
    w.watch = Cli("watch " + w.id);
    w.status = nlohmann::json::parse(Cli("status " + w.id + " --json").output, nullptr, false);
    return w;
  }

  // Submits `spec`, expects the job to FAIL and returns its reason.
  static std::string ReasonItFailedWith(const std::string& spec) {
    const Watched w = SubmitAndWatch(spec);
    if (w.id.empty()) return "";
    EXPECT_NE(w.watch.code, 0);
    EXPECT_EQ(w.status["state"], "FAILED");
    return w.status["reason"].get<std::string>();
  }

  // Trains `spec` locally with two ranks (its `resources` cut, output_dir dir_/<name>), as a
  // user would on one machine, for comparison with the job's results.
  static void TrainLocally(const std::string& spec, const std::string& name) {
    std::ifstream in(spec);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text = text.substr(0, text.find("resources:")) + "output_dir: " + dir_ + "/" + name + "\n";
    std::ofstream(dir_ + "/" + name + ".yaml") << text;
    Result local = Shell(kBin + " train " + dir_ + "/" + name + ".yaml --nproc 2");
    ASSERT_EQ(local.code, 0) << local.output;
  }

  static double MaxAdapterDiff(const std::string& a_dir, const std::string& b_dir) {
    auto a = Adapter(a_dir), b = Adapter(b_dir);
    EXPECT_EQ(a.size(), b.size());
    double diff = 0;
    for (const auto& [n, t] : a) diff = std::max(diff, (t - b.at(n)).abs().max().item<double>());
    return diff;
  }

  static std::map<std::string, at::Tensor> Adapter(const std::string& dir) {
    auto f = engine::SafetensorsFile::Open(dir + "/adapter_model.safetensors");
    EXPECT_TRUE(f.ok()) << f.status();
    std::map<std::string, at::Tensor> out;
    for (const auto& [n, e] : (*f)->entries()) out[n] = *(*f)->Load(n);
    return out;
  }

  static inline std::string dir_, target_, admin_token_;
  static inline int port_ = 0;
  static inline int rendezvous_first_ = 0;  // the workers' --rendezvous-ports start here (10 ports)
  static inline pid_t coordinator_ = -1;
  static inline std::vector<pid_t> workers_;
};

TEST_F(ControlPlane, JobSucceedsAndItsAdapterEqualsLocalDataParallelTraining) {
  const std::string spec = Spec("ok", "max_steps: 6, micro_batch_size: 2, checkpoint_every: 3");
  const Watched w = SubmitAndWatch(spec);
  ASSERT_EQ(w.watch.code, 0) << w.watch.output;
  EXPECT_NE(w.watch.output.find("SUCCEEDED"), std::string::npos);
  const std::string& id = w.id;
  nlohmann::json st = w.status;  // a copy: operator[] on a missing key must not be the const overload
  EXPECT_EQ(st["state"], "SUCCEEDED");
  EXPECT_GE(st["checkpoints"].size(), 2u) << "checkpoints at steps 3 and 6";
  EXPECT_EQ(st["latest_metrics"]["step"], 6);
  EXPECT_TRUE(st["latest_eval"]["eval"]["languages"].contains("hi"));
  Result dl = Cli("download " + id + " --out " + dir_ + "/downloaded");
  ASSERT_EQ(dl.code, 0) << dl.output;
  // The same config trained locally with two ranks.
  TrainLocally(spec, "local");
  EXPECT_LT(MaxAdapterDiff(dir_ + "/downloaded", dir_ + "/local/adapter"), 1e-5);
  Result logs = Cli("logs " + id);
  EXPECT_NE(logs.output.find("\"step\":6"), std::string::npos) << logs.output;
  // The ranks' own output, forwarded by their workers, up to the final line.
  EXPECT_NE(logs.output.find("[rank 0] step 6/6 | loss "), std::string::npos) << logs.output;
  EXPECT_NE(logs.output.find("[rank 0] adapter written to "), std::string::npos) << logs.output;
  EXPECT_NE(logs.output.find("[event] SUCCEEDED all ranks finished"), std::string::npos) << logs.output;
}

// Early stopping through the coordinator (a min_delta the slow lr cannot beat, so it stops
// after a few evaluations): `best` (computed there from the stored evaluations)
// is the checkpoint the trainer itself marked in the same run trained locally, and
// `download --checkpoint best` gets exactly that checkpoint's adapter.
TEST_F(ControlPlane, EarlyStoppedJobRecordsTheBestCheckpointForDownload) {
  const std::string training =
      "max_steps: 40, micro_batch_size: 2, eval_every: 2, eval_generate: {every: 4, examples: 4, max_new_tokens: 4}, "
      "early_stopping: {metric: eval_loss, patience: 2, min_delta: 0.05}";
  const std::string spec = Spec("es", training);
  const Watched w = SubmitAndWatch(spec);
  ASSERT_EQ(w.watch.code, 0) << w.watch.output;
  EXPECT_NE(w.watch.output.find("chrF:"), std::string::npos) << w.watch.output;
  const std::string& id = w.id;
  nlohmann::json st = w.status;  // a copy: operator[] on a missing key must not be the const overload
  ASSERT_TRUE(st.contains("best_checkpoint_step")) << st.dump();
  const int64_t best = st["best_checkpoint_step"].get<int64_t>();
  const int64_t last = st["latest_metrics"]["step"].get<int64_t>();
  EXPECT_LT(last, 40) << "the run stopped early";
  EXPECT_TRUE(st["latest_eval"]["eval"]["overall"].contains("chrf") == (last % 4 == 0));

  TrainLocally(spec, "local-es");
  std::ifstream best_file(dir_ + "/local-es/checkpoints/best.json");
  EXPECT_EQ(nlohmann::json::parse(best_file)["step"].get<int64_t>(), best);

  Result dl = Cli("download " + id + " --checkpoint best --json --out " + dir_ + "/best");
  ASSERT_EQ(dl.code, 0) << dl.output;
  EXPECT_EQ(nlohmann::json::parse(dl.output)["step"].get<int64_t>(), best);
  EXPECT_LT(MaxAdapterDiff(dir_ + "/best", dir_ + "/local-es/checkpoints/step-" + std::to_string(best)), 1e-5);

  // The job's report: metrics and events from the coordinator, samples from its checkpoint.
  Result report = Cli("report " + id + " --out " + dir_ + "/es-report.html");
  ASSERT_EQ(report.code, 0) << report.output;
  std::ifstream html_in(dir_ + "/es-report.html");
  const std::string html((std::istreambuf_iterator<char>(html_in)), std::istreambuf_iterator<char>());
  for (const char* part : {"Sample generations", "chrF by language", "<h2>Events</h2>", "SUCCEEDED", "Job spec",
                           "early_stopping", "best checkpoint"})
    EXPECT_NE(html.find(part), std::string::npos) << part;
  Result missing = Cli("report job-999999 --out " + dir_ + "/none.html");
  EXPECT_EQ(missing.code, 1);
  Result neither = Cli("report no-such-folder --out " + dir_ + "/none.html");
  EXPECT_NE(neither.output.find("neither a job id (job-NNNNNN) nor an output folder"), std::string::npos)
      << neither.output;
}

// data.prepare through the coordinator: rank 0's worker prepares the uploaded data, both ranks
// train on the prepared file, `status` and `watch` show the report, and the adapter equals the
// same spec trained locally with two ranks.
TEST_F(ControlPlane, JobWithDataPrepareTrainsOnThePreparedDataAndReportsIt) {
  const std::string raw = dir_ + "/raw_train.jsonl";
  {
    std::ifstream in(kExamples + "/data/instructions_train.jsonl");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream out(raw);
    out << text << text.substr(0, text.find('\n') + 1)  // an exact duplicate of the first line
        << "{\"messages\": [{\"role\": \"user\", \"content\": \"Llame al 612 345 678, por favor.\"}, "
           "{\"role\": \"assistant\", \"content\": \"Le llamaré al 612 345 678 mañana por la mañana.\"}]}\n"
        << "{\"messages\": not json\n";
  }
  const std::string spec = dir_ + "/prep.yaml";
  std::ofstream(spec) << "model: {path: " << dir_ << "/model}\n"
                      << "lora: {r: 4, alpha: 8, dropout: 0.1}\n"
                      << "data:\n  train: " << raw << "\n  max_seq_len: 128\n"
                      << "  prepare:\n    language: {languages: [en, es, de, fr, id, ar, zh, hi]}\n"
                      << "training: {lr: 0.002, seed: 3, max_steps: 4, micro_batch_size: 2}\n"
                      << "resources: {world_size: 2}\n";
  const Watched w = SubmitAndWatch(spec);
  ASSERT_EQ(w.watch.code, 0) << w.watch.output;
  EXPECT_NE(w.watch.output.find("data prepared: kept"), std::string::npos) << w.watch.output;
  const std::string& id = w.id;
  nlohmann::json st = w.status;  // a copy: operator[] on a missing key must not be the const overload
  EXPECT_EQ(st["state"], "SUCCEEDED") << st.dump();
  ASSERT_TRUE(st.contains("data_prep")) << st.dump();
  int64_t in = 0, kept = 0, dropped = 0;
  std::map<std::string, int64_t> reasons;
  for (const auto& [lang, l] : st["data_prep"]["languages"].items()) {
    in += l["examples_in"].get<int64_t>();
    kept += l["kept"].get<int64_t>();
    for (const auto& [reason, n] : l["dropped"].items()) {
      dropped += n.get<int64_t>();
      reasons[reason] += n.get<int64_t>();
    }
  }
  EXPECT_EQ(in, 51);
  EXPECT_EQ(kept + dropped, in);
  EXPECT_EQ(reasons["duplicate"], 1) << st["data_prep"].dump();
  EXPECT_EQ(reasons["malformed"], 1) << st["data_prep"].dump();
  EXPECT_EQ(st["data_prep"]["languages"]["es"]["pii_replaced"]["phone"], 2) << st["data_prep"].dump();
  Result human = Cli("status " + id);
  EXPECT_NE(human.output.find("data prepared: kept " + std::to_string(kept) + " of 51 examples"), std::string::npos)
      << human.output;

  Result dl = Cli("download " + id + " --out " + dir_ + "/prep-downloaded");
  ASSERT_EQ(dl.code, 0) << dl.output;
  TrainLocally(spec, "prep-local");
  EXPECT_LT(MaxAdapterDiff(dir_ + "/prep-downloaded", dir_ + "/prep-local/adapter"), 1e-5);
}

TEST_F(ControlPlane, CancelledJobIsCancelledAndItsRanksAreGone) {
  Result submit = Cli("submit " + Spec("long", "max_steps: 100000, micro_batch_size: 1") + " --json");
  ASSERT_EQ(submit.code, 0) << submit.output;
  const std::string id = nlohmann::json::parse(submit.output)["id"];
  // Two reads in a row: a rank exec'ing from `polytune` into `polytune-engine` is briefly
  // invisible in /proc.
  int seen = 0;
  for (int i = 0; i < 200 && seen < 2; ++i) {
    seen = RunningRanks(id) == 2 ? seen + 1 : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  Result cancel = Cli("cancel " + id);  // whatever happened, nothing must keep running
  ASSERT_EQ(seen, 2) << "ranks should be running";
  ASSERT_EQ(cancel.code, 0) << cancel.output;
  EXPECT_NE(cancel.output.find("CANCELLED"), std::string::npos);
  for (int i = 0; i < 100 && RunningRanks(id) > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(RunningRanks(id), 0) << "cancel must leave nothing running";
  Result watch = Cli("watch " + id);
  EXPECT_NE(watch.code, 0) << "watch exits non-zero unless SUCCEEDED";
}

TEST_F(ControlPlane, JobLargerThanTheClusterStaysPendingWithItsReason) {
  Result submit = Cli("submit " + Spec("big", "max_steps: 2", 4) + " --json");
  ASSERT_EQ(submit.code, 0) << submit.output;
  const std::string id = nlohmann::json::parse(submit.output)["id"];
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  auto st = nlohmann::json::parse(Cli("status " + id + " --json").output);
  EXPECT_EQ(st["state"], "PENDING");
  EXPECT_EQ(st["reason"], "needs 4 devices; the cluster has 2 in all (add workers or lower resources.world_size)");
  EXPECT_EQ(Cli("cancel " + id).code, 0);
}

TEST_F(ControlPlane, InvalidSpecIsRefusedAtSubmitAndErrorsAreOneLine) {
  const std::string bad = dir_ + "/bad.yaml";
  std::ofstream(bad)
      << "model: {path: " << dir_ << "/model}\ndata: {train: " << kExamples
      << "/data/instructions_train.jsonl}\ntraining: {lr: 0.1, learning_rate: 2}\nresources: {world_size: 1}\n";
  Result r = Cli("submit " + bad);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("'training.learning_rate' is not a known key"), std::string::npos) << r.output;
  const std::string nores = dir_ + "/nores.yaml";
  std::ofstream(nores) << "model: {path: m}\ndata: {train: t}\n";
  EXPECT_NE(Cli("submit " + nores).output.find("'resources.world_size' is required"), std::string::npos);
  Result unknown = Cli("status job-424242");
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.output.find("no job 'job-424242'"), std::string::npos) << unknown.output;
  Result down = Shell(kBin + " --coordinator 127.0.0.1:1 jobs");
  EXPECT_EQ(down.code, 1);
  EXPECT_NE(down.output.find("cannot reach the coordinator at 127.0.0.1:1"), std::string::npos) << down.output;
  EXPECT_EQ(std::count(down.output.begin(), down.output.end(), '\n'), 1) << down.output;
}

TEST_F(ControlPlane, CoordinatorRefusesAnUnknownKeyFromARawGrpcClient) {
  // No CLI: a client speaking the protocol directly gets the same refusal, naming the key.
  auto stub = v1::JobService::NewStub(rpc::MakeChannel(target_));
  v1::SubmitJobRequest req;
  req.set_name("raw");
  req.set_spec_yaml("model: {path: " + dir_ + "/model}\ndata: {train: /tmp/t.jsonl}\n" +
                    "lora: {r: 4, rank: 8}\nresources: {world_size: 1}\n");
  v1::SubmitJobResponse resp;
  auto ctx = rpc::ContextWithDeadline(10);
  grpc::Status st = stub->SubmitJob(ctx.get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("'lora.rank' is not a known key"), std::string::npos) << st.error_message();
}

TEST_F(ControlPlane, DownloadNeverDeletesAUsersFilesAndEveryReadCommandSpeaksJson) {
  Result submit = Cli("submit " + Spec("dl", "max_steps: 2, micro_batch_size: 2", 1) + " --json");
  ASSERT_EQ(submit.code, 0) << submit.output;
  const std::string id = nlohmann::json::parse(submit.output)["id"];
  Result watch = Cli("watch " + id + " --json");
  ASSERT_EQ(watch.code, 0) << watch.output;
  std::istringstream lines(watch.output);
  std::string line, last;
  int metrics = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);  // every line is one JSON object
    metrics += j["type"] == "metrics";
    last = j.value("state", last);
  }
  EXPECT_GE(metrics, 2);
  EXPECT_EQ(last, "SUCCEEDED");
  auto st = nlohmann::json::parse(Cli("status " + id + " --json").output);
  std::string reasons;
  for (const auto& e : st["events"]) reasons += e["reason"].get<std::string>() + "\n";
  EXPECT_NE(reasons.find("its rank is running"), std::string::npos) << reasons;
  Result logs = Cli("logs " + id + " --json");
  ASSERT_EQ(logs.code, 0);
  std::istringstream log_lines(logs.output);
  std::set<std::string> types;
  while (std::getline(log_lines, line)) types.insert(nlohmann::json::parse(line)["type"].get<std::string>());
  EXPECT_EQ(types, (std::set<std::string>{"event", "log", "metrics"}));
  // A folder with the user's own file: refused, then with --force only the adapter is written.
  const std::string out = dir_ + "/mine";
  fs::create_directories(out);
  std::ofstream(out + "/notes.txt") << "keep me";
  Result refused = Cli("download " + id + " --out " + out);
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.output.find("is not empty"), std::string::npos) << refused.output;
  Result forced = Cli("download " + id + " --out " + out + " --force --json");
  ASSERT_EQ(forced.code, 0) << forced.output;
  EXPECT_EQ(nlohmann::json::parse(forced.output)["step"], 2);
  EXPECT_TRUE(fs::exists(out + "/adapter_model.safetensors"));
  std::ifstream kept(out + "/notes.txt");
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(kept)), std::istreambuf_iterator<char>()), "keep me");
  Result cancel = Cli("cancel " + id + " --json");
  EXPECT_EQ(nlohmann::json::parse(cancel.output)["state"], "SUCCEEDED") << "cancel of an ended job changes nothing";
}

TEST_F(ControlPlane, WatchShowsWhyAJobWaits) {
  Result submit = Cli("submit " + Spec("waits", "max_steps: 2", 4) + " --json");
  const std::string id = nlohmann::json::parse(submit.output)["id"];
  Result watch = Shell(CliEnv() + "timeout 3 " + kBin + " --coordinator " + target_ + " watch " + id);
  EXPECT_NE(watch.output.find("PENDING: needs 4 devices"), std::string::npos) << watch.output;
  Cli("cancel " + id);
}

TEST_F(ControlPlane, BadDataAtRunTimeNamesTheUsersFileAndLine) {
  const std::string data = dir_ + "/my_notes.jsonl";
  std::ofstream(data) << "{\"text\": \"hola\"}\n{\"text\": 5}\n";
  const std::string spec = dir_ + "/baddata.yaml";
  std::ofstream(spec) << "model: {path: " << dir_ << "/model}\ndata: {train: " << data
                      << ", max_seq_len: 64}\ntraining: {max_steps: 2}\nresources: {world_size: 1}\n";
  const std::string reason = ReasonItFailedWith(spec);
  EXPECT_NE(reason.find("my_notes.jsonl:2"), std::string::npos) << reason;
}

TEST_F(ControlPlane, FlagsOutOfRangeAreRefusedAndVersionsReported) {
  Result port =
      Shell(kBuild + "/coordinator/polytune-coordinator --listen 127.0.0.1:99999 --data-dir " + dir_ + "/never");
  EXPECT_NE(port.code, 0);
  EXPECT_NE(port.output.find("--listen '127.0.0.1:99999' is not HOST:PORT with PORT in 0-65535"), std::string::npos)
      << port.output;
  for (const char* devices : {"cpu:0", "cpu:-2"}) {
    Result w = Shell(kBuild + "/worker/daemon/polytune-worker --coordinator " + target_ + " --work-dir " + dir_ +
                     "/never --devices " + devices);
    EXPECT_NE(w.code, 0);
    EXPECT_NE(w.output.find("is not cpu:N with N >= 1"), std::string::npos) << w.output;
  }
  Result v = Shell(kBin + " --version");
  EXPECT_EQ(v.code, 0);
  EXPECT_EQ(v.output.rfind("polytune 0.", 0), 0u) << v.output;
  EXPECT_NE(v.output.find("(commit "), std::string::npos) << v.output;
}

TEST_F(ControlPlane, ASecondCoordinatorOnTheSamePortOrDataDirIsRefused) {
  const std::string coordinator = kBuild + "/coordinator/polytune-coordinator --metrics-listen '' ";
  Result same_dir =
      Shell(coordinator + "--listen 127.0.0.1:" + std::to_string(FreePort()) + " --data-dir " + dir_ + "/coord");
  EXPECT_NE(same_dir.code, 0);
  EXPECT_NE(same_dir.output.find("is in use by another polytune-coordinator (pid " + std::to_string(coordinator_)),
            std::string::npos)
      << same_dir.output;
  Result metrics_taken =
      Shell(kBuild + "/coordinator/polytune-coordinator --listen 127.0.0.1:" + std::to_string(FreePort()) +
            " --data-dir " + dir_ + "/third-coord --metrics-listen " + target_);
  EXPECT_NE(metrics_taken.code, 0);
  EXPECT_NE(metrics_taken.output.find("cannot serve metrics on " + target_), std::string::npos) << metrics_taken.output;
  Result same_port = Shell(coordinator + "--listen " + target_ + " --data-dir " + dir_ + "/other-coord");
  EXPECT_NE(same_port.code, 0) << "no SO_REUSEPORT sharing of the port";
  EXPECT_NE(same_port.output.find("cannot listen on " + target_), std::string::npos) << same_port.output;
}

TEST_F(ControlPlane, MissingModelOnTheWorkerFailsTheJobWithThatReason) {
  const std::string spec = Spec("nomodel", "max_steps: 2", 1);
  std::ifstream in(spec);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = text.find(dir_ + "/model");
  text.replace(at, (dir_ + "/model").size(), dir_ + "/no-such-model");
  std::ofstream(spec) << text;
  EXPECT_NE(ReasonItFailedWith(spec).find("no-such-model' does not exist on worker"), std::string::npos);
}

TEST_F(ControlPlane, CoordinatorServesGrpcHealth) {
  // grpc.health.v1.Health/Check with an empty request; SERVING is field 1 = 1 ("\x08\x01").
  std::string bytes;
  grpc::Status status = testing::RawCall(rpc::MakeChannel(target_), "/grpc.health.v1.Health/Check", "", "", &bytes);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

TEST_F(ControlPlane, CorruptedCheckpointUploadIsRefused) {
  Result submit = Cli("submit " + Spec("ck", "max_steps: 2", 4) + " --json");  // stays pending; any job id works
  const std::string id = nlohmann::json::parse(submit.output)["id"];
  auto stub = v1::WorkerService::NewStub(rpc::MakeChannel(target_));
  const std::string payload(3 << 20, 'x');  // three 1 MiB chunks
  auto ctx = rpc::ContextWithDeadline(10);
  v1::UploadCheckpointResponse resp;
  auto writer = stub->UploadCheckpoint(ctx.get(), &resp);
  for (size_t pos = 0; pos < payload.size(); pos += 1 << 20) {
    v1::UploadCheckpointChunk c;
    if (pos == 0) {
      c.set_job_id(id);
      c.set_step(7);
      c.set_sha256(Sha256Hex(payload));
    }
    std::string chunk = payload.substr(pos, 1 << 20);
    if (pos == (1 << 20)) chunk[5] = 'y';  // corrupted in transit
    c.set_data(chunk);
    writer->Write(c);
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
  auto status = nlohmann::json::parse(Cli("status " + id + " --json").output);
  EXPECT_TRUE(status["checkpoints"].empty()) << "a refused checkpoint is never recorded";
  Cli("cancel " + id);
}

// Declared last: it restarts the shared coordinator.
TEST_F(ControlPlane, RendezvousPortTakenByAnotherProcessIsSkipped) {
  // Another program listens on the first port of the workers' range, which the coordinator
  // hands out first: rank 0's worker notices, and the job is placed again with the next port.
  int squatter = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(squatter, 0);
  int one = 1;  // earlier jobs' stores may have left the port in TIME_WAIT
  ::setsockopt(squatter, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(rendezvous_first_));
  ASSERT_EQ(::bind(squatter, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << "port " << rendezvous_first_;
  ASSERT_EQ(::listen(squatter, 1), 0);
  Result submit = Cli("submit " + Spec("squatted", "max_steps: 2, micro_batch_size: 1") + " --json");
  ASSERT_EQ(submit.code, 0) << submit.output;
  const std::string id = nlohmann::json::parse(submit.output)["id"];
  Result watch = Cli("watch " + id);
  ::close(squatter);
  ASSERT_EQ(watch.code, 0) << watch.output;
  auto st = nlohmann::json::parse(Cli("status " + id + " --json").output);
  EXPECT_EQ(st["state"], "SUCCEEDED");
  std::string reasons;
  for (const auto& e : st["events"]) reasons += e["reason"].get<std::string>() + "\n";
  EXPECT_NE(reasons.find("rendezvous port " + std::to_string(rendezvous_first_) + " on 127.0.0.1"), std::string::npos)
      << reasons;
  EXPECT_NE(reasons.find("is taken by another process; placing the job again"), std::string::npos) << reasons;
  // The placement that ran used another port of the range.
  const size_t last = reasons.rfind("rendezvous at 127.0.0.1:");
  ASSERT_NE(last, std::string::npos) << reasons;
  const int used = std::stoi(reasons.substr(last + std::string("rendezvous at 127.0.0.1:").size()));
  EXPECT_NE(used, rendezvous_first_);
  EXPECT_GT(used, rendezvous_first_);
  EXPECT_LT(used, rendezvous_first_ + 10);
}

TEST_F(ControlPlane, CoordinatorRestartReloadsJobsAndWorkersReRegister) {
  auto before = nlohmann::json::parse(Cli("jobs --json").output);
  ASSERT_FALSE(before.empty());
  ::kill(coordinator_, SIGTERM);
  int status = 0;
  ::waitpid(coordinator_, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "SIGTERM is a clean stop: exit 0, got " << status;
  coordinator_ = Spawn(CoordinatorArgv(), dir_ + "/coord2.log");
  nlohmann::json after;
  for (int i = 0; i < 100; ++i) {
    Result r = Cli("jobs --json");
    if (r.code == 0) {
      after = nlohmann::json::parse(r.output);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[i]["id"], before[i]["id"]);
    EXPECT_EQ(after[i]["state"], before[i]["state"]);
    EXPECT_EQ(after[i]["events"].size(), before[i]["events"].size());
  }
  // Workers notice (their heartbeats are refused) and register again.
  bool both = false;
  for (int i = 0; i < 100 && !both; ++i) {
    Result w = Cli("workers --json");
    both = w.code == 0 && nlohmann::json::parse(w.output).size() == 2;
    if (!both) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(both);
  // A finished job's checkpoints are still downloadable.
  for (const auto& j : after)
    if (j["state"] == "SUCCEEDED") {
      Result dl = Cli("download " + j["id"].get<std::string>() + " --out " + dir_ + "/after-restart-" +
                      j["id"].get<std::string>());
      EXPECT_EQ(dl.code, 0) << dl.output;
    }
}

// Declared last: it adds a third worker and kills it.
TEST_F(ControlPlane, RanksDieWithTheirWorkerDaemon) {
  const pid_t w3 = Spawn(WorkerArgv(3), dir_ + "/w3.log");
  bool three = false;
  for (int i = 0; i < 100 && !three; ++i) {
    Result w = Cli("workers --json");
    int alive = 0;
    if (w.code == 0)
      for (const auto& x : nlohmann::json::parse(w.output)) alive += x["alive"].get<bool>();
    three = alive == 3;
    if (!three) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(three) << "w3 did not register";
  Result submit = Cli("submit " + Spec("orphan", "max_steps: 100000, micro_batch_size: 1", 3) + " --json");
  ASSERT_EQ(submit.code, 0) << submit.output;
  const std::string id = nlohmann::json::parse(submit.output)["id"];
  auto w3_ranks = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator("/proc")) {
      std::ifstream in(e.path() / "cmdline");
      std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      n += cmd.find("/w3/jobs/" + id + "/") != std::string::npos;
    }
    return n;
  };
  for (int i = 0; i < 200 && w3_ranks() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(w3_ranks(), 1) << "w3's rank should be running";
  ::kill(w3, SIGKILL);  // no chance to stop its ranks itself
  ::waitpid(w3, nullptr, 0);
  // Within 2 s: well before the coordinator could notice the silence (5 s) and fail the job,
  // which would stop the rank another way (its collective losing its peers).
  for (int i = 0; i < 100 && w3_ranks() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(w3_ranks(), 0) << "the rank died with its daemon";
  Cli("cancel " + id);
}

}  // namespace
}  // namespace polytune
