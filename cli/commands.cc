#include "commands.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include <ATen/Parallel.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bundled_corpus.h"
#include "cli_util.h"
#ifdef POLYTUNE_WITH_CONTROL_PLANE
#include "control_commands.h"
#endif
#include "generate_commands.h"
#include "launcher.h"
#include "polytune/common/build_info.h"
#include "polytune/common/exit_codes.h"
#include "polytune/common/file_util.h"
#include "polytune/engine/adapter_io.h"
#include "polytune/engine/communicator.h"
#include "polytune/engine/cpu_threads.h"
#include "polytune/engine/evaluator.h"
#include "polytune/engine/model_io.h"
#include "polytune/engine/model_loader.h"
#include "polytune/engine/token_dataset.h"
#include "polytune/engine/train_config.h"
#include "polytune/engine/trainer.h"
#include "polytune/text/bpe_trainer.h"
#include "polytune/text/tokenizer.h"
#include "text_commands.h"

namespace polytune::cli {
namespace {
namespace fs = std::filesystem;

using namespace polytune::engine;

std::function<void(int, int64_t)>& StepHook() {
  static auto* hook = new std::function<void(int, int64_t)>();
  return *hook;
}

std::string SelfExecutable() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "polytune";
  buf[n] = 0;
  return buf;
}

// Splits the machine's cores among the local ranks unless the config pins a count.
void ConfigureThreads(int64_t configured, int local_ranks) {
  int n = static_cast<int>(configured);
  if (n <= 0) n = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(1, local_ranks));
  ConfigureCpuThreads(n);
}

struct ModelInitArgs {
  std::string out;
  int64_t hidden = 256, layers = 4, heads = 8, kv_heads = 4, intermediate = 688, vocab = 512, seed = 0;
  int64_t head_dim = 0, max_positions = 2048;
  std::string dtype = "float32";
  bool tie = false;
  std::string tokenizer_corpus = "bundled";  // the compiled-in multilingual instructions
};

int RunModelInit(const ModelInitArgs& a) {
  ModelConfig c;
  c.hidden_size = a.hidden;
  c.num_hidden_layers = a.layers;
  c.num_attention_heads = a.heads;
  c.num_key_value_heads = a.kv_heads;
  c.intermediate_size = a.intermediate;
  c.vocab_size = a.vocab;
  c.head_dim = a.head_dim > 0 ? a.head_dim : a.hidden / std::max<int64_t>(1, a.heads);
  c.max_position_embeddings = a.max_positions;
  c.tie_word_embeddings = a.tie;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-5;
  // A byte-level BPE learned from the corpus (the bundled multilingual data by default), so
  // the model sees real subwords; its size is the model's vocabulary.
  if (!a.tokenizer_corpus.empty()) {
    text::BpeTrainOptions bo;
    bo.vocab_size = a.vocab;
    std::string corpus = a.tokenizer_corpus;
    if (corpus == "bundled") {  // written out for the trainer, which reads a file
      corpus = (fs::temp_directory_path() / absl::StrCat("polytune-corpus-", ::getpid(), ".jsonl")).string();
      absl::Status st = WriteFileAtomic(corpus, BundledCorpus());
      if (!st.ok()) return Fail(st);
    }
    auto tok = text::TrainTokenizerFromCorpus(corpus, bo, a.out);
    if (corpus != a.tokenizer_corpus) fs::remove(corpus);
    if (!tok.ok()) return Fail(tok.status());
    c.bos_token_id = (*tok)->bos_id().value_or(-1);
    c.eos_token_id = (*tok)->eos_id().value_or(-1);
  }
  // Validate through the same parser that loading uses.
  auto parsed = ParseModelConfig(ModelConfigToJson(c), "model init");
  if (!parsed.ok()) return Fail(parsed.status());
  absl::Status st = WriteRandomModel(a.out, c, static_cast<uint64_t>(a.seed), a.dtype);
  if (!st.ok()) return Fail(st);
  std::printf("wrote %s (hidden %lld, %lld layers, %lld heads / %lld kv heads, vocab %lld)\n", a.out.c_str(),
              static_cast<long long>(a.hidden), static_cast<long long>(a.layers), static_cast<long long>(a.heads),
              static_cast<long long>(a.kv_heads), static_cast<long long>(a.vocab));
  return 0;
}

struct TrainArgs {
  std::string config;
  int nproc = 1;
  std::string resume_dir;
  bool resume = false;
  bool overwrite = false;
  // Set by the launcher (or the control plane) for rank processes.
  int rank = -1, world_size = 1, local_rank = 0, master_port = 0;
  std::string master_addr = "127.0.0.1";
  int collective_timeout = 120;
};

// What an earlier run left in output_dir (empty when there is none).
std::vector<std::string> EarlierRun(const std::string& output_dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const char* entry : {"checkpoints", "adapter", "metrics.jsonl"}) {
    const fs::path p = fs::path(output_dir) / entry;
    if (fs::is_directory(p, ec) ? !fs::is_empty(p, ec) : fs::exists(p, ec) && fs::file_size(p, ec) > 0)
      found.push_back(entry);
  }
  return found;
}

// Before any rank starts: --nproc in range, and an output_dir holding an earlier run is only
// continued (--resume) or replaced (--overwrite), never mixed with a new one.
absl::Status CheckTrainLaunch(const TrainArgs& a, const TrainConfig& config) {
  if (a.nproc < 1 || a.nproc > 4096)
    return absl::InvalidArgumentError(absl::StrCat("--nproc must be between 1 and 4096, got ", a.nproc));
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (static_cast<unsigned>(a.nproc) > cores && config.training.device != "cuda")
    std::fprintf(stderr,
                 "polytune: warning: --nproc %d is more than this machine's %u cores; ranks will share cores and "
                 "each step will be slower than with --nproc %u\n",
                 a.nproc, cores, cores);
  if (a.resume && a.overwrite) return absl::InvalidArgumentError("--resume and --overwrite contradict each other");
  const std::vector<std::string> earlier = EarlierRun(config.output_dir);
  if (earlier.empty() || a.resume) return absl::OkStatus();
  if (!a.overwrite)
    return absl::FailedPreconditionError(
        absl::StrCat("output_dir ", config.output_dir, " holds an earlier run (", absl::StrJoin(earlier, ", "),
                     "); pass --resume to continue it, --overwrite to replace it, or choose another output_dir"));
  std::error_code ec;
  for (const auto& entry : earlier) fs::remove_all(fs::path(config.output_dir) / entry, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot clear ", config.output_dir, ": ", ec.message()));
  return absl::OkStatus();
}

// The exit code of a failed run (common/exit_codes.h): errors about what the run was given
// fail the same way on every try, the rest (peers, timeouts, I/O) may not.
int ExitCodeFor(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnimplemented:
      return kExitBadInput;
    default:
      return kExitFailed;
  }
}

int FailRun(const absl::Status& st) {
  Fail(st);
  return ExitCodeFor(st);
}

// Set by SIGTERM: the run finishes the step in flight, checkpoints it and exits with
// kExitPreempted (a worker draining, a preempting job, Kubernetes stopping the pod).
volatile std::sig_atomic_t g_stop_requested = 0;
void RequestStop(int) { g_stop_requested = 1; }

int RunTrain(const TrainArgs& a, const std::vector<std::string>& raw_args) {
  auto config = LoadTrainConfig(a.config);
  if (!config.ok()) return FailRun(config.status());
  if (a.rank < 0) {  // the launcher or a single process; ranks of a launch were checked by it
    absl::Status st = CheckTrainLaunch(a, *config);
    if (!st.ok()) return FailRun(st);
  }
  if (a.rank < 0 && a.nproc > 1) {
    // Launcher mode: re-run this binary once per rank with the rendezvous flags.
    absl::Status st = RunLocalRanks(SelfExecutable(), raw_args, a.nproc);
    if (!st.ok()) return Fail(st);
    return 0;
  }
  ConfigureThreads(config->training.num_threads, a.rank < 0 ? 1 : a.world_size);
  std::unique_ptr<Communicator> comm;
  if (a.rank < 0) {
    comm = MakeSingleProcessCommunicator();
  } else {
    RendezvousOptions ro;
    ro.master_addr = a.master_addr;
    ro.master_port = a.master_port;
    ro.rank = a.rank;
    ro.world_size = a.world_size;
    ro.timeout = std::chrono::seconds(a.collective_timeout);
    auto device = ResolveDevice(config->training.device, a.local_rank);
    if (!device.ok()) return FailRun(device.status());
    ro.cuda = device->is_cuda();
    ro.device_index = device->has_index() ? device->index() : a.local_rank;
    auto c = ConnectProcessGroup(ro);
    if (!c.ok()) {
      Fail(c.status());
      return c.status().code() == absl::StatusCode::kAlreadyExists ? kExitRendezvousPortBusy : kExitFailed;
    }
    comm = std::move(*c);
  }
  TrainRunOptions options;
  options.resume = a.resume;
  options.resume_dir = a.resume_dir;
  options.local_rank = a.local_rank;
  options.progress = comm->rank() == 0;
  if (StepHook()) options.before_step = [rank = comm->rank()](int64_t step) { StepHook()(rank, step); };
  struct sigaction sa {};
  sa.sa_handler = RequestStop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  options.stop_requested = [] { return g_stop_requested != 0; };
  auto summary = RunTraining(*config, *comm, options);
  if (!summary.ok()) return FailRun(summary.status());
  return summary->preempted ? kExitPreempted : kExitOk;
}

struct EvalArgs {
  // The same defaults as a training spec's model section (nf4, double quantisation).
  InferenceModelArgs model;
  std::string data, format = "auto", tokenizer, chat_template;
  bool json = false, generate = false;
  int64_t batch_size = 8, max_seq_len = 4096;
  GenerationArgs gen;
  std::vector<std::string> labels;
};

int RunEval(const EvalArgs& a) {
  ConfigureCpuThreads(static_cast<int>(std::thread::hardware_concurrency()));
  auto model = LoadInferenceModel(a.model);
  if (!model.ok()) return Fail(model.status());
  // Text data goes through the same tokenizer, template and masking as training.
  TrainConfig pipeline_config;
  pipeline_config.model.path = a.model.model;
  pipeline_config.data.format = a.format;
  pipeline_config.data.tokenizer = a.tokenizer;
  pipeline_config.data.chat_template = a.chat_template;
  pipeline_config.data.max_seq_len = a.max_seq_len;
  if (!text::ParseDataFormat(a.format).ok()) return Fail(text::ParseDataFormat(a.format).status());
  auto pipeline = LoadTextPipeline(pipeline_config);
  if (!pipeline.ok()) return Fail(pipeline.status());
  auto data = LoadDataset(a.data, pipeline->Options(pipeline_config, (*model)->config().vocab_size));
  if (!data.ok()) return Fail(data.status());
  auto comm = MakeSingleProcessCommunicator();
  auto result = Evaluate(**model, *data, a.batch_size, *comm);
  if (!result.ok()) return Fail(result.status());
  nlohmann::json out = result->ToJson();
  std::optional<GenerationEvalResult> generated;
  if (a.generate) {
    auto r = RunGenerationEval(**model, *pipeline, a.model.model, a.data, a.format, a.gen, a.labels, &out);
    if (!r.ok()) return Fail(r.status());
    generated = std::move(*r);
  }
  if (a.json) {
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  std::printf("%-10s %10s %10s %10s %10s\n", "language", "loss", "ppl", "accuracy", "tokens");
  for (const auto& [lang, f] : result->languages)
    std::printf("%-10s %10.4f %10.3f %10.4f %10lld\n", lang.c_str(), f.loss, f.ppl, f.accuracy,
                static_cast<long long>(f.tokens));
  const auto& o = result->overall;
  std::printf("%-10s %10.4f %10.3f %10.4f %10lld\n", "overall", o.loss, o.ppl, o.accuracy,
              static_cast<long long>(o.tokens));
  if (generated) PrintGenerationTable(*generated);
  return 0;
}

}  // namespace

std::function<int()> RegisterCommands(CLI::App& app) {
  app.require_subcommand(1);
  auto run = std::make_shared<std::function<int()>>([] { return 0; });
  RegisterTextCommands(app, run);
#ifdef POLYTUNE_WITH_CONTROL_PLANE
  RegisterControlCommands(app, run);
#endif
  RegisterGenerateCommand(app, run);

  // polytune model init
  auto* model_cmd = app.add_subcommand("model", "Create or inspect model checkpoints");
  model_cmd->require_subcommand(1);
  auto* init = model_cmd->add_subcommand("init", "Write a small randomly initialised Llama checkpoint (HF format)");
  auto init_args = std::make_shared<ModelInitArgs>();
  init->add_option("--out", init_args->out, "Output directory")->required();
  init->add_option("--hidden-size", init_args->hidden, "Hidden size")->capture_default_str();
  init->add_option("--layers", init_args->layers, "Decoder layers")->capture_default_str();
  init->add_option("--heads", init_args->heads, "Attention heads")->capture_default_str();
  init->add_option("--kv-heads", init_args->kv_heads, "Key/value heads (GQA)")->capture_default_str();
  init->add_option("--intermediate-size", init_args->intermediate, "MLP width")->capture_default_str();
  init->add_option("--vocab-size", init_args->vocab, "Vocabulary size")->capture_default_str();
  init->add_option("--head-dim", init_args->head_dim, "Head dimension (default hidden/heads)");
  init->add_option("--seed", init_args->seed, "Random seed")->capture_default_str();
  init->add_option("--dtype", init_args->dtype, "float32, float16 or bfloat16")->capture_default_str();
  init->add_flag("--tie-embeddings", init_args->tie, "Tie lm_head to the embeddings");
  init->add_option("--tokenizer-corpus", init_args->tokenizer_corpus,
                   "Text to learn the tokenizer from (JSONL or plain); bundled: the compiled-in multilingual "
                   "instructions; empty: write no tokenizer")
      ->capture_default_str();
  init->callback([run, init_args] { *run = [init_args] { return RunModelInit(*init_args); }; });

  // polytune train
  auto* train = app.add_subcommand("train", "Fine-tune with QLoRA from a YAML config");
  auto train_args = std::make_shared<TrainArgs>();
  train->add_option("config", train_args->config, "Training config (YAML)")->required()->check(CLI::ExistingFile);
  train->add_option("--nproc", train_args->nproc, "Local data-parallel ranks (at least 1)");
  train->add_flag("--overwrite", train_args->overwrite,
                  "Replace an earlier run in output_dir (its checkpoints, adapter and metrics.jsonl)");
  auto* resume = train
                     ->add_option("--resume", train_args->resume_dir,
                                  "Continue from a checkpoint (default: the latest in output_dir)")
                     ->expected(0, 1);
  train->add_option("--rank", train_args->rank)->group("");
  train->add_option("--world-size", train_args->world_size)->group("");
  train->add_option("--local-rank", train_args->local_rank)->group("");
  train->add_option("--master-addr", train_args->master_addr)->group("");
  train->add_option("--master-port", train_args->master_port)->group("");
  train
      ->add_option("--collective-timeout", train_args->collective_timeout,
                   "Seconds a collective may take before the rank gives up")
      ->capture_default_str();
  train->callback([run, train_args, resume, train] {
    train_args->resume = resume->count() > 0;
    // Arguments for rank processes: everything the user gave, minus --nproc.
    std::vector<std::string> raw = {"train", train_args->config};
    if (train_args->resume) {
      raw.push_back("--resume");
      if (!train_args->resume_dir.empty()) raw.push_back(train_args->resume_dir);
    }
    raw.push_back("--collective-timeout");
    raw.push_back(std::to_string(train_args->collective_timeout));
    *run = [train_args, raw] { return RunTrain(*train_args, raw); };
  });

  // polytune eval
  auto* eval = app.add_subcommand("eval", "Loss, perplexity and accuracy per language");
  auto eval_args = std::make_shared<EvalArgs>();
  eval_args->model.AddTo(eval);
  eval->add_option("--data", eval_args->data,
                   "JSONL of messages, alpaca, text or tokens examples (--format auto decides per line)")
      ->required();
  eval->add_option("--batch-size", eval_args->batch_size, "Examples per forward pass")->capture_default_str();
  eval->add_option("--max-seq-len", eval_args->max_seq_len, "Longer examples are truncated")->capture_default_str();
  eval->add_flag("--json", eval_args->json, "Print one JSON object");
  eval->add_option("--format", eval_args->format, "auto, messages, alpaca, text or tokens")->capture_default_str();
  eval->add_option("--tokenizer", eval_args->tokenizer, "Folder with tokenizer.json (default: the model folder)");
  eval->add_option("--chat-template", eval_args->chat_template, "Built-in template instead of the model's own");
  eval->add_flag("--generate", eval_args->generate,
                 "Also generate (greedy) for every example with a reference answer or label and score it: chrF, "
                 "chrF++, exact match; label accuracy and macro P/R/F1");
  eval_args->gen.AddTo(eval, /*sampling=*/false);
  eval->add_option("--labels", eval_args->labels,
                   "Declared label set for classification data (default: the labels seen)")
      ->delimiter(',');
  eval->callback([run, eval_args] { *run = [eval_args] { return RunEval(*eval_args); }; });

  // polytune export
  auto* exp = app.add_subcommand("export", "Merge an adapter into a full-precision HF checkpoint");
  auto exp_model = std::make_shared<std::string>(), exp_adapter = std::make_shared<std::string>(),
       exp_out = std::make_shared<std::string>();
  exp->add_option("--model", *exp_model, "Base model directory")->required();
  exp->add_option("--adapter", *exp_adapter, "PEFT adapter directory")->required();
  exp->add_option("--out", *exp_out, "Output directory")->required();
  exp->callback([run, exp_model, exp_adapter, exp_out] {
    *run = [=] {
      ConfigureCpuThreads(static_cast<int>(std::thread::hardware_concurrency()));
      absl::Status st = ExportMergedModel(*exp_model, *exp_adapter, *exp_out);
      if (!st.ok()) return Fail(st);
      std::printf("wrote merged model to %s\n", exp_out->c_str());
      return 0;
    };
  });

  return [run] { return (*run)(); };
}

void SetTrainingStepHook(std::function<void(int rank, int64_t step)> hook) { StepHook() = std::move(hook); }

int Main(int argc, char** argv) {
  engine::ReexecWithTunedCpuEnvironment(argc, argv);
  CLI::App app{"polytune: multilingual QLoRA fine-tuning"};
  app.set_version_flag("--version", std::string("polytune ") + BuildDescription());
  auto run = RegisterCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return run();
}

}  // namespace polytune::cli
