// End-to-end training through the real `polytune` binary: loss falls, data-parallel
// splits agree, resume reproduces the uninterrupted run, a dead rank stops the job, and
// bad inputs give one clear error line.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "nlohmann/json.hpp"
#include "polytune/common/file_util.h"
#include "polytune/engine/safetensors.h"
#include "test_util.h"

namespace polytune {
namespace {

namespace fs = std::filesystem;
const std::string kBin = POLYTUNE_BIN;
// `polytune` plus a test-only step seam that kills a chosen rank (tests/support/).
const std::string kFaultBin = POLYTUNE_FAULT_BIN;
const std::string kExamples = POLYTUNE_EXAMPLES;

using Result = testing::ShellResult;
using testing::Shell;

class TrainingE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    Result r =
        Shell(kBin + " model init --out " + (dir_ / "model") +
              " --hidden-size 64 --layers 2 --heads 4 --kv-heads 2 --intermediate-size 128 --vocab-size 320 --seed 3");
    ASSERT_EQ(r.code, 0) << r.output;
  }

  // Writes a config; `training` is the YAML flow mapping body of the training section.
  std::string Config(const std::string& name, const std::string& training,
                     const std::string& lora = "r: 4, alpha: 8, dropout: 0.1", const std::string& data_extra = "") {
    const std::string path = dir_ / (name + ".yaml");
    std::ofstream(path) << "model: {path: " << (dir_ / "model") << ", quantization: nf4, double_quant: true}\n"
                        << "lora: {" << lora << "}\n"
                        << "data: {train: " << kExamples << "/data/train.jsonl, eval: " << kExamples
                        << "/data/eval.jsonl, max_seq_len: 96" << data_extra << "}\n"
                        << "training: {" << (training.find("lr:") == std::string::npos ? "lr: 0.01, " : "")
                        << "warmup_steps: 2, seed: 7, " << training << "}\n"
                        << "output_dir: " << (dir_ / ("out-" + name)) << "\n";
    return path;
  }

  std::vector<nlohmann::json> Metrics(const std::string& name) {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir_ / ("out-" + name + "/metrics.jsonl"));
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
    return out;
  }

  std::map<std::string, at::Tensor> Adapter(const std::string& dir) {
    auto f = engine::SafetensorsFile::Open(dir + "/adapter_model.safetensors");
    EXPECT_TRUE(f.ok()) << f.status();
    std::map<std::string, at::Tensor> out;
    for (const auto& [n, e] : (*f)->entries()) out[n] = *(*f)->Load(n);
    return out;
  }

  static double MaxDiff(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b) {
    EXPECT_EQ(a.size(), b.size());
    double d = 0;
    for (const auto& [n, t] : a) d = std::max(d, (t - b.at(n)).abs().max().item<double>());
    return d;
  }

  testing::TempDir dir_;
};

TEST_F(TrainingE2E, LossFallsAndArtifactsAreWritten) {
  Result r = Shell(kBin + " train " +
                   Config("fall", "max_steps: 40, micro_batch_size: 4, eval_every: 20, checkpoint_every: 20"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("step 40/40"), std::string::npos) << r.output;
  std::vector<double> losses;
  int evals = 0;
  std::vector<double> eval_losses;
  for (const auto& m : Metrics("fall")) {
    if (m.contains("eval")) {
      ++evals;
      eval_losses.push_back(m["eval"]["overall"]["loss"].get<double>());
      EXPECT_TRUE(m["eval"]["languages"].contains("zh")) << m.dump();
      EXPECT_GT(m["eval"]["overall"]["tokens"].get<int64_t>(), 0);
      continue;
    }
    for (const char* k : {"step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_second", "elapsed_seconds"})
      EXPECT_TRUE(m.contains(k)) << k;
    losses.push_back(m["loss"].get<double>());
  }
  ASSERT_EQ(losses.size(), 40u);
  EXPECT_EQ(evals, 3);  // before training, at 20, at the end
  const double first = (losses[0] + losses[1] + losses[2]) / 3, last = (losses[37] + losses[38] + losses[39]) / 3;
  // A 64-wide random model starts at ln(300) = 5.70; 40 LoRA steps take about 0.3 off.
  EXPECT_LT(last, first - 0.15) << "loss did not fall: " << first << " -> " << last;
  EXPECT_LT(eval_losses.back(), eval_losses.front() - 0.1);
  for (const char* f : {"checkpoints/step-20/adapter_model.safetensors", "checkpoints/step-20/optimizer.safetensors",
                        "checkpoints/step-40/trainer_state.json", "adapter/adapter_config.json"})
    EXPECT_TRUE(fs::exists(dir_ / ("out-fall/" + std::string(f)))) << f;
}

TEST_F(TrainingE2E, TwoRanksWithAccumulationEqualOneRankFullBatch) {
  // fp32 sums in another order differ by ~1e-7 relative; Adam's m/sqrt(v) turns that into
  // update differences proportional to lr, so the comparison runs at a typical QLoRA lr.
  Result a =
      Shell(kBin + " train " + Config("one", "lr: 0.002, max_steps: 6, micro_batch_size: 4, grad_accum_steps: 1"));
  ASSERT_EQ(a.code, 0) << a.output;
  Result b = Shell(kBin + " train " +
                   Config("two", "lr: 0.002, max_steps: 6, micro_batch_size: 1, grad_accum_steps: 2") + " --nproc 2");
  ASSERT_EQ(b.code, 0) << b.output;
  const double diff = MaxDiff(Adapter(dir_ / "out-one/adapter"), Adapter(dir_ / "out-two/adapter"));
  EXPECT_LT(diff, 1e-5) << "adapters differ by " << diff;
  double moved = 0;  // B starts at zero: training must have moved it well beyond the tolerance
  for (const auto& [n, t] : Adapter(dir_ / "out-one/adapter"))
    if (n.find("lora_B") != std::string::npos) moved = std::max(moved, t.abs().max().item<double>());
  EXPECT_GT(moved, 1e-3);
  auto ma = Metrics("one"), mb = Metrics("two");
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i)
    if (ma[i].contains("loss")) EXPECT_NEAR(ma[i]["loss"].get<double>(), mb[i]["loss"].get<double>(), 1e-5) << i;
}

TEST_F(TrainingE2E, TwoRanksOverlappedBucketsEqualOneAllReduceBitForBit) {
  // Real Gloo between two processes: 2 KB buckets (many, started during backward) against one
  // all-reduce after backward. Two-rank sums are a + b either way, so the adapters are equal;
  // a run resumed from a checkpoint (new processes, hooks registered afresh) ends equal too.
  const std::string training =
      "max_steps: 4, micro_batch_size: 1, grad_accum_steps: 2, checkpoint_every: 2, grad_bucket_mb: ";
  const std::string buckets = Config("buckets", training + "0.002");
  Result a = Shell(kBin + " train " + buckets + " --nproc 2");
  ASSERT_EQ(a.code, 0) << a.output;
  Result b = Shell(kBin + " train " + Config("single", training + "0") + " --nproc 2");
  ASSERT_EQ(b.code, 0) << b.output;
  const auto x = Adapter(dir_ / "out-buckets/adapter"), y = Adapter(dir_ / "out-single/adapter");
  ASSERT_EQ(x.size(), y.size());
  for (const auto& [n, t] : x) EXPECT_TRUE(t.equal(y.at(n))) << n;
  double moved = 0;  // B starts at zero: equal because both trained, not because neither did
  for (const auto& [n, t] : x)
    if (n.find("lora_B") != std::string::npos) moved = std::max(moved, t.abs().max().item<double>());
  EXPECT_GT(moved, 1e-3);

  fs::remove_all(dir_ / "out-buckets/checkpoints/step-4");
  fs::remove_all(dir_ / "out-buckets/adapter");
  Result resumed = Shell(kBin + " train " + buckets + " --nproc 2 --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  for (const auto& [n, t] : Adapter(dir_ / "out-buckets/adapter")) EXPECT_TRUE(t.equal(y.at(n))) << n;
}

TEST_F(TrainingE2E, ResumeReproducesTheUninterruptedRun) {
  const std::string training =
      "max_steps: 8, micro_batch_size: 2, grad_accum_steps: 2, checkpoint_every: 4, eval_every: 4";
  Result full = Shell(kBin + " train " + Config("full", training));
  ASSERT_EQ(full.code, 0) << full.output;
  // The interrupted run also keeps the projection products in checkpointing (a speed/memory
  // setting): same bits, and not part of the run's identity, so its resume is accepted.
  const std::string cfg = Config("cut", training + ", checkpoint_keeps_projections: true");
  Result first = Shell(kBin + " train " + cfg);
  ASSERT_EQ(first.code, 0) << first.output;
  // Simulate a crash after step 6: the step-8 checkpoint and final adapter never happened,
  // and the metrics log has two steps past the last checkpoint plus a torn line.
  fs::remove_all(dir_ / "out-cut/checkpoints/step-8");
  fs::remove_all(dir_ / "out-cut/adapter");
  Result resumed = Shell(kBin + " train " + cfg + " --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("step-4"), std::string::npos) << resumed.output;
  EXPECT_EQ(MaxDiff(Adapter(dir_ / "out-full/adapter"), Adapter(dir_ / "out-cut/adapter")), 0.0);
  auto a = Metrics("full"), b = Metrics("cut");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["step"], b[i]["step"]);
    if (a[i].contains("loss")) EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "record " << i;
  }
}

// Language-balanced sampling and language loss weights keep the two guarantees above: two
// ranks with accumulation equal one rank with the full batch, and a resumed run equals the
// uninterrupted one bit for bit.
TEST_F(TrainingE2E, LanguageSamplingAndWeightsKeepRankAndResumeEquivalence) {
  const std::string lora = "r: 4, alpha: 8, dropout: 0.1";
  const std::string data = ", sampling: {strategy: unimax, max_epochs_per_language: 2}";
  const std::string weights = ", language_weights: {zh: 3.0, hi: 0.5}";
  Result a =
      Shell(kBin + " train " +
            Config("s-one", "lr: 0.002, max_steps: 6, micro_batch_size: 4, grad_accum_steps: 1" + weights, lora, data));
  ASSERT_EQ(a.code, 0) << a.output;
  Result b =
      Shell(kBin + " train " +
            Config("s-two", "lr: 0.002, max_steps: 6, micro_batch_size: 1, grad_accum_steps: 2" + weights, lora, data) +
            " --nproc 2");
  ASSERT_EQ(b.code, 0) << b.output;
  EXPECT_LT(MaxDiff(Adapter(dir_ / "out-s-one/adapter"), Adapter(dir_ / "out-s-two/adapter")), 1e-5);
  // Step records carry target tokens per language, summing to the step's targets.
  for (const auto& m : Metrics("s-one")) {
    if (!m.contains("loss")) continue;
    ASSERT_TRUE(m.contains("target_tokens_by_language")) << m.dump();
    int64_t sum = 0;
    for (const auto& [lang, n] : m["target_tokens_by_language"].items()) sum += n.get<int64_t>();
    EXPECT_EQ(sum, m["target_tokens"].get<int64_t>());
  }
  const std::string training =
      "max_steps: 8, micro_batch_size: 2, grad_accum_steps: 2, checkpoint_every: 4, language_weights: "
      "inverse_frequency";
  const std::string sampled = ", sampling: {strategy: temperature, alpha: 0.3}";
  Result full = Shell(kBin + " train " + Config("s-full", training, lora, sampled));
  ASSERT_EQ(full.code, 0) << full.output;
  const std::string cfg = Config("s-cut", training, lora, sampled);
  ASSERT_EQ(Shell(kBin + " train " + cfg).code, 0);
  fs::remove_all(dir_ / "out-s-cut/checkpoints/step-8");
  fs::remove_all(dir_ / "out-s-cut/adapter");
  Result resumed = Shell(kBin + " train " + cfg + " --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(MaxDiff(Adapter(dir_ / "out-s-full/adapter"), Adapter(dir_ / "out-s-cut/adapter")), 0.0);
}

// SIGTERM (a drain, a preemption, Kubernetes stopping a pod): the rank finishes its step,
// checkpoints it and exits with the preempted code; resuming from that checkpoint ends with
// the uninterrupted run's adapter, bit for bit.
TEST_F(TrainingE2E, SigtermCheckpointsTheStepInFlightAndTheResumedRunIsExact) {
  const std::string training = "max_steps: 40, micro_batch_size: 2, eval_every: 10";
  Result full = Shell(kBin + " train " + Config("full", training));
  ASSERT_EQ(full.code, 0) << full.output;
  const std::string cfg = Config("term", training);
  // The signal arrives when the run has made progress (its log shows step 3).
  Result stopped = Shell("( " + kBin + " train " + cfg + " 2>&1 & pid=$!; " +
                         "for i in $(seq 600); do grep -q 'step 3/' " + (dir_ / "term.log") +
                         " 2>/dev/null && break; sleep 0.05; done; kill -TERM $pid; wait $pid; echo exit=$? ) > " +
                         (dir_ / "term.log") + " 2>&1; cat " + (dir_ / "term.log"));
  ASSERT_NE(stopped.output.find("exit=4"), std::string::npos) << stopped.output;
  EXPECT_NE(stopped.output.find("stopped on request after step"), std::string::npos) << stopped.output;
  EXPECT_FALSE(fs::exists(dir_ / "out-term/adapter")) << "a stopped run writes no final adapter";
  int checkpoints = 0;
  for (const auto& e : fs::directory_iterator(dir_ / "out-term/checkpoints")) checkpoints += e.is_directory();
  EXPECT_EQ(checkpoints, 1) << "the step in flight was checkpointed";
  Result resumed = Shell(kBin + " train " + cfg + " --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(MaxDiff(Adapter(dir_ / "out-full/adapter"), Adapter(dir_ / "out-term/adapter")), 0.0);
  auto a = Metrics("full"), b = Metrics("term");
  ASSERT_EQ(a.size(), b.size()) << "each step and eval once";
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i]["step"], b[i]["step"]);
}

TEST_F(TrainingE2E, DeadRankStopsTheJobWithAClearError) {
  Result r = Shell("POLYTUNE_TEST_KILL_RANK=1 POLYTUNE_TEST_KILL_AT_STEP=2 " + kFaultBin + " train " +
                   Config("dead", "max_steps: 50, micro_batch_size: 1") + " --nproc 2 --collective-timeout 20");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("rank 1 was killed by signal 9"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("step 50/50"), std::string::npos);
}

TEST_F(TrainingE2E, NonFiniteLossStopsTheRunNamingTheStepAndWritesNoAdapter) {
  // A learning rate this large blows the weights up after the first update.
  Result r =
      Shell(kBin + " train " + Config("nan", "lr: 1.0e+30, max_grad_norm: 0, max_steps: 6, micro_batch_size: 2"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("polytune: error: step "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("training stopped and no adapter was written"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out-nan/adapter"));
  // skip_step drops such updates and finishes with a finite adapter.
  Result skip = Shell(kBin + " train " +
                      Config("skip",
                             "lr: 1.0e+30, max_grad_norm: 0, max_steps: 4, micro_batch_size: 2, "
                             "on_nonfinite: skip_step"));
  ASSERT_EQ(skip.code, 0) << skip.output;
  EXPECT_NE(skip.output.find("skipped step"), std::string::npos) << skip.output;
  for (const auto& [name, t] : Adapter(dir_ / "out-skip/adapter"))
    EXPECT_TRUE(at::isfinite(t).all().item<bool>()) << name;
}

TEST_F(TrainingE2E, UsedOutputDirIsRefusedUnlessResumedOrOverwritten) {
  const std::string cfg = Config("used", "max_steps: 2, micro_batch_size: 2");
  ASSERT_EQ(Shell(kBin + " train " + cfg).code, 0);
  Result again = Shell(kBin + " train " + cfg);
  EXPECT_EQ(again.code, 2) << "bad input (common/exit_codes.h)";
  EXPECT_NE(again.output.find("holds an earlier run (checkpoints, adapter, metrics.jsonl); pass --resume"),
            std::string::npos)
      << again.output;
  Result over = Shell(kBin + " train " + cfg + " --overwrite");
  ASSERT_EQ(over.code, 0) << over.output;
  EXPECT_EQ(Metrics("used").size(), 4u) << "one fresh run: eval, 2 steps, eval; nothing of the first";
  // A checkpoint of another spec is refused on resume, naming the key that differs.
  std::ifstream in(cfg);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find("seed: 7"), 7, "seed: 8");
  std::ofstream(cfg) << text;
  Result resumed = Shell(kBin + " train " + cfg + " --resume");
  EXPECT_EQ(resumed.code, 2);
  EXPECT_NE(resumed.output.find("belongs to a different run: 'training.seed' was 7 there and is 8 now"),
            std::string::npos)
      << resumed.output;
  Result zero = Shell(kBin + " train " + cfg + " --nproc 0");
  EXPECT_NE(zero.output.find("--nproc must be between 1 and 4096, got 0"), std::string::npos) << zero.output;
}

TEST_F(TrainingE2E, MoreRanksThanCoresWarnsWhyItWillBeSlow) {
  const unsigned cores = std::thread::hardware_concurrency();
  if (cores == 0 || cores > 4)
    GTEST_SKIP() << "needs a machine with at most 4 cores (this one has " << cores
                 << "): it starts cores + 1 ranks, which is cheap only on a small machine";
  const std::string n = std::to_string(cores + 1);
  Result r = Shell(kBin + " train " + Config("crowded", "max_steps: 1, micro_batch_size: 1") + " --nproc " + n);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("polytune: warning: --nproc " + n + " is more than this machine's " + std::to_string(cores) +
                          " cores"),
            std::string::npos)
      << r.output;
}

TEST_F(TrainingE2E, Rank0WhosePortIsTakenExitsWithThePortBusyCode) {
  // Another program holds the port when rank 0 tries to serve its store.
  int squatter = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(squatter, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  ASSERT_EQ(::bind(squatter, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(squatter, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(squatter, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  Result r = Shell(kBin + " train " + Config("busy", "max_steps: 1") +
                   " --rank 0 --world-size 2 --master-addr 127.0.0.1 --master-port " + std::to_string(port) +
                   " --collective-timeout 5");
  ::close(squatter);
  EXPECT_EQ(r.code, 3) << r.output;  // kExitRendezvousPortBusy
  EXPECT_NE(r.output.find("rendezvous port " + std::to_string(port) + " on 127.0.0.1 is taken by another process"),
            std::string::npos)
      << r.output;
}

TEST_F(TrainingE2E, EvalPrintsPerLanguageJsonAndAdapterHelps) {
  Result t = Shell(kBin + " train " + Config("ev", "max_steps: 16, micro_batch_size: 4"));
  ASSERT_EQ(t.code, 0) << t.output;
  const std::string common =
      kBin + " eval --model " + (dir_ / "model") + " --data " + kExamples + "/data/eval.jsonl --json";
  Result base = Shell(common + " --quantization nf4 --double-quant");
  Result tuned = Shell(common + " --quantization nf4 --double-quant --adapter " + (dir_ / "out-ev/adapter"));
  ASSERT_EQ(base.code, 0) << base.output;
  ASSERT_EQ(tuned.code, 0) << tuned.output;
  auto jb = nlohmann::json::parse(base.output), jt = nlohmann::json::parse(tuned.output);
  // eval's defaults are training's (nf4 with double quantisation).
  Result dflt = Shell(common);
  ASSERT_EQ(dflt.code, 0) << dflt.output;
  EXPECT_EQ(nlohmann::json::parse(dflt.output)["overall"], jb["overall"]);
  for (const char* k : {"loss", "ppl", "accuracy", "tokens"}) EXPECT_TRUE(jb["overall"].contains(k)) << k;
  EXPECT_EQ(jb["languages"].size(), 8u);
  EXPECT_LT(jt["overall"]["loss"].get<double>(), jb["overall"]["loss"].get<double>());
  // The merged export evaluates like base + adapter.
  Result ex = Shell(kBin + " export --model " + (dir_ / "model") + " --adapter " + (dir_ / "out-ev/adapter") +
                    " --out " + (dir_ / "merged"));
  ASSERT_EQ(ex.code, 0) << ex.output;
  Result merged = Shell(kBin + " eval --model " + (dir_ / "merged") + " --data " + kExamples +
                        "/data/eval.jsonl --json --quantization none");
  Result unq = Shell(common + " --quantization none --adapter " + (dir_ / "out-ev/adapter"));
  auto jm = nlohmann::json::parse(merged.output), ju = nlohmann::json::parse(unq.output);
  EXPECT_NEAR(jm["overall"]["loss"].get<double>(), ju["overall"]["loss"].get<double>(), 1e-5);
}

TEST_F(TrainingE2E, GenerateAndEvalByGenerationWithTheTrainedAdapter) {
  Result t = Shell(kBin + " train " + Config("gen", "max_steps: 6, micro_batch_size: 4"));
  ASSERT_EQ(t.code, 0) << t.output;
  const std::string model = " --model " + (dir_ / "model") + " --adapter " + (dir_ / "out-gen/adapter");
  const std::string data = kExamples + "/data/instructions_eval.jsonl";
  Result g = Shell(kBin + " generate" + model + " --data " + data + " --max-new-tokens 8 --json 2>/dev/null");
  ASSERT_EQ(g.code, 0) << g.output;
  std::istringstream lines(g.output);
  std::string line;
  int n = 0;
  std::set<std::string> langs;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    for (const char* k : {"prompt", "output", "lang", "prompt_tokens", "output_tokens", "finish_reason", "reference"})
      EXPECT_TRUE(j.contains(k)) << k << " in " << line;
    EXPECT_LE(j["output_tokens"].get<int>(), 8);
    // The prompt ends with the generation prompt (model init writes a Llama 3 style template):
    // the reference answer is not in it.
    const std::string prompt = j["prompt"].get<std::string>(), tail = "assistant<|end_header_id|>\n\n";
    EXPECT_EQ(prompt.substr(prompt.size() - std::min(prompt.size(), tail.size())), tail) << prompt;
    langs.insert(j["lang"].get<std::string>());
    ++n;
  }
  EXPECT_EQ(n, 16);
  EXPECT_EQ(langs.size(), 8u);
  // Sampling is reproducible for a seed.
  const std::string sample = kBin + " generate" + model + " --prompt 'Hola' --temperature 0.9 --top-p 0.9 --json";
  Result s1 = Shell(sample + " --seed 5"), s2 = Shell(sample + " --seed 5");
  ASSERT_EQ(s1.code, 0) << s1.output;
  EXPECT_EQ(s1.output, s2.output);
  // Eval by generation adds its figures to every language and keeps the existing fields.
  Result e = Shell(kBin + " eval" + model + " --data " + data + " --generate --max-new-tokens 8 --json");
  ASSERT_EQ(e.code, 0) << e.output;
  auto j = nlohmann::json::parse(e.output);
  for (const char* k : {"loss", "ppl", "accuracy", "tokens", "chrf", "chrfpp", "exact_match", "generated"})
    EXPECT_TRUE(j["overall"].contains(k)) << k;
  EXPECT_EQ(j["overall"]["generated"].get<int>(), 16);
  for (const auto& [lang, f] : j["languages"].items()) EXPECT_EQ(f["generated"].get<int>(), 2) << lang;
  EXPECT_EQ(j["samples"].size(), 16u);
  Result table = Shell(kBin + " eval" + model + " --data " + data + " --generate --max-new-tokens 4");
  ASSERT_EQ(table.code, 0) << table.output;
  EXPECT_NE(table.output.find("chrF++"), std::string::npos) << table.output;
  Result both = Shell(kBin + " generate" + model + " --data " + data + " --prompt hi");
  EXPECT_EQ(both.code, 1);
  EXPECT_NE(both.output.find("exactly one of --prompt TEXT and --data FILE"), std::string::npos) << both.output;
}

// Early stopping on eval loss with patience 2, in a run whose eval loss stalls (constant, high
// lr): the stop step and `best` are recomputed here from the run's own metrics.jsonl.
TEST_F(TrainingE2E, EarlyStoppingStopsWhereItsRuleSaysAndRecordsTheBestCheckpoint) {
  const std::string path = dir_ / "es.yaml";
  std::ofstream(path) << "model: {path: " << (dir_ / "model") << ", quantization: nf4}\n"
                      << "lora: {r: 4, alpha: 8}\n"
                      << "data: {train: " << kExamples << "/data/instructions_train.jsonl, eval: " << kExamples
                      << "/data/instructions_eval.jsonl, max_seq_len: 96}\n"
                      << "training: {lr: 0.05, lr_schedule: constant, max_steps: 40, micro_batch_size: 4, seed: 7, "
                      << "eval_every: 2, eval_generate: {every: 4, examples: 8, max_new_tokens: 6}, "
                      << "early_stopping: {metric: eval_loss, patience: 2}}\n"
                      << "output_dir: " << (dir_ / "out-es") << "\n";
  Result t = Shell(kBin + " train " + path);
  ASSERT_EQ(t.code, 0) << t.output;
  int64_t last_step = 0, evals_without = 0, expected_stop = 0, best_step = 0;
  double best = 0;
  for (const auto& m : Metrics("es")) {
    if (!m.contains("eval")) {
      last_step = m["step"].get<int64_t>();
      continue;
    }
    const int64_t step = m["step"].get<int64_t>();
    const auto& overall = m["eval"]["overall"];
    // Generation figures at steps 0, 4, 8, ... (eval_generate.every 4), not at 2, 6, ...
    EXPECT_EQ(overall.contains("chrf"), step % 4 == 0) << "step " << step;
    if (step == 0 || expected_stop) continue;
    const double loss = overall["loss"].get<double>();
    if (best_step == 0 || loss < best) {
      best = loss, best_step = step, evals_without = 0;
    } else if (++evals_without == 2) {
      expected_stop = step;
    }
  }
  ASSERT_GT(expected_stop, 0) << "the eval loss never stalled for 2 evaluations; the test needs a run that does";
  EXPECT_LT(expected_stop, 40);
  EXPECT_EQ(last_step, expected_stop);
  EXPECT_NE(t.output.find("early stopping after step " + std::to_string(expected_stop)), std::string::npos) << t.output;
  std::ifstream in(dir_ / "out-es/checkpoints/best.json");
  const auto best_json = nlohmann::json::parse(in);
  EXPECT_EQ(best_json["step"].get<int64_t>(), best_step);
  EXPECT_DOUBLE_EQ(best_json["value"].get<double>(), best);
  EXPECT_TRUE(fs::exists(dir_ / ("out-es/checkpoints/step-" + std::to_string(best_step)) + "/trainer_state.json"));
  EXPECT_TRUE(fs::exists(dir_ / "out-es/adapter/adapter_model.safetensors"));
  // Sample generations of every generating evaluation, for `polytune report`.
  std::ifstream gens(dir_ / "out-es/generations.jsonl");
  std::string line;
  int generating_evals = 0;
  while (std::getline(gens, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["step"].get<int64_t>() % 4, 0);
    EXPECT_FALSE(j["samples"].empty());
    ++generating_evals;
  }
  EXPECT_EQ(generating_evals, static_cast<int>(expected_stop / 4) + 1);
}

TEST_F(TrainingE2E, InitAdapterContinuesFromAPreviousAdapter) {
  Result first = Shell(kBin + " train " + Config("stage1", "max_steps: 8, micro_batch_size: 4"));
  ASSERT_EQ(first.code, 0) << first.output;
  // Stage 2 starts from stage 1's adapter: its step-0 eval equals stage 1's final eval.
  Result second = Shell(kBin + " train " +
                        Config("stage2", "max_steps: 2, micro_batch_size: 4",
                               "dropout: 0.1, init_adapter: " + (dir_ / "out-stage1/adapter")));
  ASSERT_EQ(second.code, 0) << second.output;
  nlohmann::json end1, start2;
  for (const auto& m : Metrics("stage1"))
    if (m.contains("eval")) end1 = m;
  for (const auto& m : Metrics("stage2"))
    if (m.contains("eval") && start2.is_null()) start2 = m;
  ASSERT_FALSE(end1.is_null());
  ASSERT_FALSE(start2.is_null());
  EXPECT_EQ(start2["step"], 0);
  EXPECT_NEAR(start2["eval"]["overall"]["loss"].get<double>(), end1["eval"]["overall"]["loss"].get<double>(), 1e-9);
}

TEST_F(TrainingE2E, PackedTrainingOnChatDataEqualsUnpacked) {
  // Chat data through the model's own template (llama3, written by model init) with masking.
  auto config = [&](const std::string& name, bool packing) {
    const std::string path = dir_ / (name + ".yaml");
    std::ofstream(path) << "model: {path: " << (dir_ / "model") << "}\n"
                        << "lora: {r: 4, alpha: 8, dropout: 0.1}\n"
                        << "data: {train: " << kExamples
                        << "/data/instructions_train.jsonl, max_seq_len: 128, packing: " << (packing ? "true" : "false")
                        << "}\n"
                        << "training: {lr: 0.002, max_steps: 4, micro_batch_size: 6, seed: 3}\n"
                        << "output_dir: " << (dir_ / ("out-" + name)) << "\n";
    return path;
  };
  Result plain = Shell(kBin + " train " + config("unpacked", false));
  ASSERT_EQ(plain.code, 0) << plain.output;
  Result packed = Shell(kBin + " train " + config("packed", true));
  ASSERT_EQ(packed.code, 0) << packed.output;
  const double diff = MaxDiff(Adapter(dir_ / "out-unpacked/adapter"), Adapter(dir_ / "out-packed/adapter"));
  EXPECT_LT(diff, 1e-5) << "packed and unpacked adapters differ by " << diff;
  auto a = Metrics("unpacked"), b = Metrics("packed");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].contains("loss")) continue;
    EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), 1e-5) << i;
    EXPECT_EQ(a[i]["target_tokens"], b[i]["target_tokens"]);
  }
}

TEST_F(TrainingE2E, TokenizerAndDataCommands) {
  // tokenizer encode on the real Llama 3 tokenizer fixture, against its HF vectors.
  const std::string tok = std::string(POLYTUNE_FIXTURES) + "/tokenizers/llama3";
  std::ifstream vin(tok + "/vectors.json");
  nlohmann::json vectors = nlohmann::json::parse(vin);
  {
    std::ofstream in(dir_ / "lines.jsonl");
    for (int i = 0; i < 5; ++i) in << nlohmann::json(vectors[i]["text"]).dump() << "\n";
  }
  Result enc = Shell(kBin + " tokenizer encode --tokenizer " + tok + " --jsonl < " + (dir_ / "lines.jsonl"));
  ASSERT_EQ(enc.code, 0) << enc.output;
  std::istringstream lines(enc.output);
  std::string line;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(std::getline(lines, line));
    EXPECT_EQ(nlohmann::json::parse(line), vectors[i]["ids"]) << vectors[i]["text"];
  }
  // data render --json: one object per example with aligned ids and labels.
  Result render = Shell(kBin + " data render --tokenizer " + (dir_ / "model") + " --data " + kExamples +
                        "/data/instructions_eval.jsonl --json");
  ASSERT_EQ(render.code, 0) << render.output;
  std::istringstream rl(render.output);
  int examples = 0;
  while (std::getline(rl, line)) {
    auto j = nlohmann::json::parse(line);
    ASSERT_EQ(j["input_ids"].size(), j["labels"].size());
    int trained = 0;
    for (const auto& l : j["labels"]) trained += l.get<int64_t>() != -100;
    EXPECT_GT(trained, 0);
    EXPECT_LT(trained, static_cast<int>(j["labels"].size()));
    ++examples;
  }
  EXPECT_EQ(examples, 16);
  Result inspect = Shell(kBin + " data inspect " + kExamples + "/data/instructions_train.jsonl --tokenizer " +
                         (dir_ / "model") + " --max-seq-len 64 --json");
  ASSERT_EQ(inspect.code, 0) << inspect.output;
  auto ij = nlohmann::json::parse(inspect.output);
  EXPECT_EQ(ij["examples"], 48);
  EXPECT_EQ(ij["languages"].size(), 8u);
  EXPECT_EQ(ij["formats"]["alpaca"], 16);
  EXPECT_GT(ij["truncated"].get<int>(), 0);
  // A bad line names file, line and field.
  std::ofstream(dir_ / "bad_chat.jsonl")
      << R"({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]})"
      << "\n";
  Result bad = Shell(kBin + " data render --tokenizer " + (dir_ / "model") + " --data " + (dir_ / "bad_chat.jsonl"));
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.output.find("bad_chat.jsonl:1: field 'messages[1].role' is 'robot'"), std::string::npos) << bad.output;
}

TEST_F(TrainingE2E, BadInputsGiveOneClearLine) {
  const std::string cfg = dir_ / "bad.yaml";
  std::ofstream(cfg) << "model: {path: m}\ndata: {train: t}\noutput_dir: o\ntraining: {lr: 0.1, epocs: 2}\n";
  Result r = Shell(kBin + " train " + cfg);
  EXPECT_EQ(r.code, 2) << "bad input: a restart would fail the same way";
  EXPECT_NE(r.output.find("'training.epocs' is not a known key"), std::string::npos) << r.output;

  const std::string data = dir_ / "bad.jsonl";
  std::ofstream(data) << "{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 2\n";
  Result e = Shell(kBin + " eval --model " + (dir_ / "model") + " --data " + data);
  EXPECT_EQ(e.code, 1);
  EXPECT_NE(e.output.find("bad.jsonl:2"), std::string::npos) << e.output;

  fs::resize_file(dir_ / "model/model.safetensors", 1000);
  Result m = Shell(kBin + " eval --model " + (dir_ / "model") + " --data " + kExamples + "/data/eval.jsonl");
  EXPECT_EQ(m.code, 1);
  EXPECT_NE(m.output.find("model.safetensors"), std::string::npos) << m.output;
  EXPECT_NE(m.output.find("truncated"), std::string::npos) << m.output;
}

}  // namespace
}  // namespace polytune
