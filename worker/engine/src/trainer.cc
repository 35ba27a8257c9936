#include "polytune/engine/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"
#include "polytune/common/status_macros.h"
#include "polytune/engine/adamw.h"
#include "polytune/engine/adapter_io.h"
#include "polytune/engine/checkpoint.h"
#include "polytune/engine/cpu_threads.h"
#include "polytune/engine/data_preparation.h"
#include "polytune/engine/evaluator.h"
#include "polytune/engine/gradient_buckets.h"
#include "polytune/engine/lr_schedule.h"
#include "polytune/engine/metrics_log.h"
#include "polytune/engine/model_loader.h"
#include "polytune/engine/token_dataset.h"
#include "polytune/engine/train_step.h"
#include "polytune/engine/training_eval.h"
#include "polytune/spec/early_stopping.h"

namespace polytune::engine {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t % 3600) / 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

// The base model, quantised as configured, with a fresh LoRA adapter or the init_adapter.
absl::StatusOr<std::unique_ptr<LlamaModel>> LoadModelWithAdapter(const TrainConfig& config, const at::Device& device) {
  LoadOptions load;
  load.quantization = config.model.quantization;
  load.double_quant = config.model.double_quant;
  load.device = device;
  ASSIGN_OR_RETURN(load.compute_dtype, ParseComputeDtype(config.training.compute_dtype));
  if (device.is_cpu() && load.compute_dtype == at::kBFloat16 && !CpuHasNativeBf16Matmul())
    std::fprintf(stderr,
                 "warning: training.compute_dtype is bfloat16 but this CPU has neither AVX512_BF16 nor AMX-BF16: "
                 "its bf16 matmuls are emulated and slower than float32\n");
  ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LoadModel(config.model.path, load));
  const int64_t n_layers = model->config().num_hidden_layers;
  if (!config.init_adapter.empty()) {
    ASSIGN_OR_RETURN(PeftAdapter init, LoadPeftAdapter(config.init_adapter));
    init.settings.dropout = config.lora.dropout;
    RETURN_IF_ERROR(ApplyPeftAdapter(init, model.get()));
  } else {
    for (int64_t l : config.lora.layers)
      if (l >= n_layers)
        return absl::InvalidArgumentError(
            absl::StrCat("lora.layers names layer ", l, " but the model has ", n_layers, " layers"));
    model->AttachLora(config.lora, config.training.seed);
  }
  return model;
}

// The run's identity: its defining spec keys and the sha256 of its datasets' contents (so
// a worker's cached copy of a dataset counts as the same data).
absl::StatusOr<std::map<std::string, std::string>> RunIdentity(const TrainConfig& config) {
  std::map<std::string, std::string> run = spec::RunDefiningKeys(config);
  for (const auto& [key, d] : {std::make_pair("data.train.sha256", &config.data.train),
                               std::make_pair("data.eval.sha256", &config.data.eval)}) {
    if (!d->is_path()) continue;
    ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(d->path()));
    run[key] = Sha256Hex(bytes);
  }
  return run;
}

// With --resume: loads the checkpoint into the model and optimizer, cuts the metrics log back
// to it and returns its state. Otherwise starts an empty log and returns a state at step 0.
absl::StatusOr<TrainerState> ResumeOrStart(const TrainConfig& config, const TrainRunOptions& options,
                                           int64_t global_batch, const std::map<std::string, std::string>& run,
                                           bool leader, LlamaModel* model, AdamW* optimizer, MetricsLog* metrics) {
  const auto& tc = config.training;
  if (!options.resume) {
    if (leader) RETURN_IF_ERROR(metrics->Reset());
    return TrainerState{};
  }
  std::string dir = options.resume_dir;
  if (dir.empty()) {
    auto latest = LatestCheckpoint(config.output_dir);
    if (!latest)
      return absl::NotFoundError(absl::StrCat("--resume: no checkpoint under ", config.output_dir, "/checkpoints"));
    dir = *latest;
  }
  ASSIGN_OR_RETURN(TrainerState state, LoadCheckpoint(dir, model, optimizer));
  for (const auto& [key, value] : state.run) {  // empty for checkpoints from before runs were recorded
    auto now = run.find(key);
    const std::string current = now == run.end() ? "(absent)" : now->second;
    if (current != value)
      return absl::FailedPreconditionError(absl::StrCat(
          dir, " belongs to a different run: '", key, "' was ", value, " there and is ", current,
          " now. Resume with the spec that wrote it, or train into a new output_dir (or pass --overwrite)."));
  }
  if (state.global_batch_size != global_batch || state.seed != tc.seed)
    return absl::FailedPreconditionError(absl::StrCat(
        dir, ": checkpoint was written with global batch ", state.global_batch_size, " and seed ", state.seed,
        "; this run has global batch ", global_batch, " (micro_batch_size x grad_accum_steps x ranks) and seed ",
        tc.seed, ". Resume with the same settings."));
  if (leader) {
    RETURN_IF_ERROR(metrics->TruncateAfter(state.step));
    std::fprintf(stderr, "resuming from %s (step %lld)\n", dir.c_str(), static_cast<long long>(state.step));
  }
  return state;
}

// Rank 0 keeps every evaluation's sample generations in output_dir/generations.jsonl, one line
// per evaluation ({"step": K, "samples": [...]}), for `polytune report`.
absl::Status AppendGenerationSamples(const std::string& output_dir, int64_t step,
                                     const std::vector<GenerationSample>& samples) {
  if (samples.empty()) return absl::OkStatus();
  nlohmann::json line = {{"step", step}, {"samples", nlohmann::json::array()}};
  for (const auto& s : samples) {
    nlohmann::json j = {
        {"lang", s.lang}, {"prompt", s.prompt}, {"output", s.output}, {"reference", s.reference}, {"chrf", s.chrf}};
    if (!s.label.empty()) j["label"] = s.label;
    line["samples"].push_back(std::move(j));
  }
  std::ofstream out(output_dir + "/generations.jsonl", std::ios::app);
  out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  if (!out) return absl::InternalError(absl::StrCat("cannot append to ", output_dir, "/generations.jsonl"));
  return absl::OkStatus();
}

}  // namespace

DatasetOptions TextPipeline::Options(const TrainConfig& config, int64_t vocab_size) const {
  DatasetOptions o;
  o.max_seq_len = config.data.max_seq_len;
  o.vocab_size = vocab_size;
  o.format = *text::ParseDataFormat(config.data.format);
  o.tokenizer = tokenizer.get();
  o.chat_template = chat_template ? &*chat_template : nullptr;
  o.train_on_inputs = config.data.train_on_inputs;
  return o;
}

absl::StatusOr<TextPipeline> LoadTextPipeline(const TrainConfig& config) {
  TextPipeline p;
  if (config.data.format == "tokens") return p;
  const std::string dir = config.data.tokenizer.empty() ? config.model.path : config.data.tokenizer;
  if (!fs::exists(dir + "/tokenizer.json")) {
    if (config.data.format == "auto") return p;  // pre-tokenised lines still work; text lines will say why not
    return absl::NotFoundError(absl::StrCat("data.format ", config.data.format, " needs a tokenizer, but ", dir,
                                            "/tokenizer.json does not exist; set data.tokenizer"));
  }
  ASSIGN_OR_RETURN(p.tokenizer, text::Tokenizer::Load(dir));
  if (!config.data.chat_template.empty()) {
    ASSIGN_OR_RETURN(text::ChatTemplate t, text::ChatTemplate::Builtin(config.data.chat_template));
    p.chat_template = std::move(t);
  } else if (!p.tokenizer->chat_template().empty()) {
    ASSIGN_OR_RETURN(text::ChatTemplate t,
                     text::ChatTemplate::FromSource(p.tokenizer->chat_template(), "tokenizer_config.json"));
    p.chat_template = std::move(t);
  }
  return p;
}

absl::StatusOr<at::Device> ResolveDevice(const std::string& name, int local_rank) {
  if (name == "cpu") return at::Device(at::kCPU);
  if (name == "auto") {
    if (at::hasCUDA()) return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
    return at::Device(at::kCPU);
  }
  if (!at::hasCUDA())
    return absl::FailedPreconditionError(
        absl::StrCat("training.device is '", name, "' but this build or machine has no CUDA"));
  if (name == "cuda") return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  try {
    return at::Device(name);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("training.device '", name, "' is not a device name"));
  }
}

absl::StatusOr<TrainSummary> RunTraining(const TrainConfig& config, Communicator& comm,
                                         const TrainRunOptions& options) {
  const bool leader = comm.rank() == 0;
  const auto& tc = config.training;
  ASSIGN_OR_RETURN(at::Device device, ResolveDevice(tc.device, options.local_rank));

  ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LoadModelWithAdapter(config, device));

  ASSIGN_OR_RETURN(TextPipeline pipeline, LoadTextPipeline(config));
  DatasetOptions data_options = pipeline.Options(config, model->config().vocab_size);
  // data.prepare: rank 0 prepares (or finds cached) and every rank trains on the result.
  ASSIGN_OR_RETURN(
      const std::optional<PreparedTrainingData> prepared,
      PrepareTrainingData(config, comm, static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))));
  ASSIGN_OR_RETURN(TokenDataset train, LoadDataset(prepared ? prepared->path : config.data.train.path(), data_options));
  std::optional<TokenDataset> eval_data;
  if (!config.data.eval.empty()) {
    ASSIGN_OR_RETURN(TokenDataset e, LoadDataset(config.data.eval.path(), data_options));
    eval_data = std::move(e);
  }
  ASSIGN_OR_RETURN(TrainingEvaluator evaluator,
                   TrainingEvaluator::Create(config, pipeline, *model, std::move(eval_data)));

  const int64_t world = comm.world_size();
  const int64_t per_rank = tc.micro_batch_size * tc.grad_accum_steps;
  const int64_t global_batch = per_rank * world;
  const BatchSchedule schedule(train, global_batch, tc.seed, config.data.sampling);
  const std::vector<double> language_weights = ResolveLanguageWeights(tc.language_weights, train);
  const int64_t total_steps = tc.max_steps > 0 ? tc.max_steps : schedule.StepsForEpochs(tc.epochs);

  std::map<std::string, at::Tensor> named = model->LoraParameters();
  std::vector<at::Tensor> params;
  for (auto& [name, p] : named) params.push_back(p);
  AdamW optimizer(params, AdamWOptions{tc.adam_beta1, tc.adam_beta2, tc.adam_epsilon, tc.weight_decay});
  FlatGradients flat(params);
  // Data parallel: buckets all-reduced while backward still runs (one all-reduce after it
  // when training.grad_bucket_mb is 0).
  std::unique_ptr<OverlappedGradientReducer> overlapped;
  if (world > 1 && tc.grad_bucket_mb > 0)
    overlapped = std::make_unique<OverlappedGradientReducer>(
        std::vector<std::pair<std::string, at::Tensor>>(named.begin(), named.end()), comm,
        static_cast<int64_t>(tc.grad_bucket_mb * 1024 * 1024));

  std::error_code ec;
  fs::create_directories(config.output_dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create output_dir '", config.output_dir, "': ", ec.message()));
  MetricsLog metrics(config.output_dir + "/metrics.jsonl");

  using RunKeys = std::map<std::string, std::string>;
  ASSIGN_OR_RETURN(const RunKeys run, RunIdentity(config));
  ASSIGN_OR_RETURN(const TrainerState resumed,
                   ResumeOrStart(config, options, global_batch, run, leader, model.get(), &optimizer, &metrics));
  const int64_t start_step = resumed.step;
  // Every rank sees the same (all-reduced) evaluations, so every rank stops at the same step.
  std::optional<spec::EarlyStoppingTracker> stopper;
  if (tc.early_stopping) {
    stopper.emplace(*tc.early_stopping);
    if (resumed.early_stopping.is_object()) stopper->RestoreFrom(resumed.early_stopping);
  }

  auto record = [&](const MetricsRecord& r) -> absl::Status {
    if (!leader) return absl::OkStatus();
    RETURN_IF_ERROR(metrics.Append(r));
    if (options.on_record) options.on_record(r);
    return absl::OkStatus();
  };
  if (prepared && start_step == 0) RETURN_IF_ERROR(record(MetricsRecord{prepared->summary}));
  // Evaluates at `step` (when there is eval data); true when early stopping saw a new best.
  auto run_eval = [&](int64_t step) -> absl::StatusOr<bool> {
    if (!evaluator.has_eval()) return false;
    ASSIGN_OR_RETURN(EvalMetrics m, evaluator.Run(*model, step, total_steps, schedule.EpochAt(step), comm));
    RETURN_IF_ERROR(record({m}));
    if (leader) RETURN_IF_ERROR(AppendGenerationSamples(config.output_dir, step, evaluator.samples()));
    if (leader && options.progress) {
      std::fprintf(stderr, "\neval @ step %lld: loss %.4f ppl %.2f acc %.3f", static_cast<long long>(step),
                   m.overall.loss, m.overall.ppl, m.overall.accuracy);
      if (m.overall.has_generation())
        std::fprintf(stderr, " chrF %.2f chrF++ %.2f exact %.3f", m.overall.chrf, m.overall.chrfpp,
                     m.overall.exact_match);
      std::fprintf(stderr, "\n");
    }
    return stopper && stopper->Observe(step, m.overall);
  };
  auto checkpoint = [&](int64_t step, double lr) -> absl::Status {
    if (leader) {
      TrainerState state{step, total_steps, global_batch, tc.seed, step * global_batch, schedule.EpochAt(step),
                         lr,   run};
      if (stopper) state.early_stopping = stopper->ToJson();
      const std::string dir = config.output_dir + "/checkpoints/" + CheckpointDirName(step);
      std::map<std::string, std::string> extra;
      if (auto gens = ReadFileToString(config.output_dir + "/generations.jsonl"); gens.ok())
        extra["generations.jsonl"] = std::move(*gens);
      RETURN_IF_ERROR(SaveCheckpoint(dir, *model, config.model.path, optimizer, state, extra));
      if (options.on_checkpoint) options.on_checkpoint(dir);
    }
    return absl::OkStatus();
  };

  // Rank 0 records which checkpoint holds the best evaluation so far.
  auto mark_best = [&](int64_t step) -> absl::Status {
    if (!leader || !stopper) return absl::OkStatus();
    nlohmann::json best = {{"step", step},
                           {"checkpoint", CheckpointDirName(step)},
                           {"metric", tc.early_stopping->metric},
                           {"value", *stopper->best_value()}};
    return WriteFileAtomic(config.output_dir + "/checkpoints/best.json", best.dump(2) + "\n");
  };
  if (leader) {
    // The spec beside its outputs, for `polytune report` (and whoever looks at the folder later).
    RETURN_IF_ERROR(WriteFileAtomic(config.output_dir + "/job.yaml", spec::ToCanonicalYaml(config)));
    if (start_step == 0) fs::remove(config.output_dir + "/generations.jsonl", ec);
  }
  if (start_step == 0) RETURN_IF_ERROR(run_eval(0).status());
  const auto t0 = Clock::now();
  double last_loss = 0;
  const bool tty = ::isatty(STDERR_FILENO);
  std::optional<int64_t> stopped_early_at;
  MicroBatchOptions micro_options;
  micro_options.seed = tc.seed;
  micro_options.gradient_checkpointing = tc.gradient_checkpointing;
  micro_options.checkpoint_keeps_projections = tc.checkpoint_keeps_projections;
  micro_options.pack_len = config.data.packing ? config.data.max_seq_len : 0;
  for (int64_t step = start_step; step < total_steps; ++step) {
    if (options.before_step) options.before_step(step);
    const auto step_start = Clock::now();
    // next batch -> forward/backward per micro-batch -> reduce -> clip -> update -> record
    const StepPlan plan =
        PlanStep(train, schedule, step, tc.micro_batch_size, tc.grad_accum_steps, world, language_weights);
    double local_loss = 0;
    for (int64_t m = 0; m < tc.grad_accum_steps; ++m) {
      if (overlapped && m + 1 == tc.grad_accum_steps) overlapped->Arm();
      local_loss +=
          ForwardBackward(*model, train, schedule, plan, MicroBatchPositions(plan, comm.rank(), m), micro_options);
    }
    const bool stop_here = options.stop_requested && options.stop_requested();
    ASSIGN_OR_RETURN(const ReducedStep reduced, overlapped ? overlapped->Finish(local_loss, stop_here)
                                                           : ReduceGradients(flat, comm, local_loss, stop_here));
    const double step_loss = reduced.loss_sum / plan.Normaliser();
    const double grad_norm = ClipGradNorm(params, tc.max_grad_norm);
    const double lr = LearningRateAt(tc.lr_schedule, tc.lr, step, tc.warmup_steps, total_steps);
    if (!std::isfinite(step_loss) || !std::isfinite(grad_norm)) {
      // Every rank sees the same reduced values, so all ranks take the same branch.
      const std::string what =
          absl::StrFormat("step %d: the loss is %g and the gradient norm %g", step + 1, step_loss, grad_norm);
      if (tc.on_nonfinite == spec::OnNonFinite::kFail)
        return absl::FailedPreconditionError(
            absl::StrCat(what,
                         "; training stopped and no adapter was written (lower training.lr, check the data, "
                         "or set training.on_nonfinite: skip_step)"));
      ZeroGradients(params);
      if (leader) std::fprintf(stderr, "\nskipped %s (training.on_nonfinite: skip_step)\n", what.c_str());
      continue;
    }
    optimizer.Step(lr);
    ZeroGradients(params);
    last_loss = step_loss;

    const int64_t done = step + 1;
    const double step_seconds = Seconds(Clock::now() - step_start);
    const double elapsed = Seconds(Clock::now() - t0);
    StepMetrics sm;
    sm.step = done;
    sm.total_steps = total_steps;
    sm.epoch = schedule.EpochAt(done);
    sm.loss = step_loss;
    sm.lr = lr;
    sm.grad_norm = grad_norm;
    sm.tokens = plan.tokens;
    sm.target_tokens = plan.target_tokens;
    for (size_t l = 0; l < train.languages.size(); ++l)
      sm.target_tokens_by_language[train.languages[l]] = plan.targets_by_language[l];
    sm.tokens_per_second = plan.tokens / std::max(step_seconds, 1e-9);
    sm.elapsed_seconds = elapsed;
    RETURN_IF_ERROR(record({sm}));
    if (leader && options.progress) {
      const double eta = elapsed / static_cast<double>(done - start_step) * static_cast<double>(total_steps - done);
      std::fprintf(stderr, "%sstep %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s%s", tty ? "\r" : "",
                   static_cast<long long>(done), static_cast<long long>(total_steps), step_loss, lr,
                   sm.tokens_per_second, FormatDuration(eta).c_str(), tty ? "   " : "\n");
      std::fflush(stderr);
    }
    const bool last = done == total_steps;
    bool best_here = false;
    if (tc.eval_every > 0 && done % tc.eval_every == 0 && !last) {
      ASSIGN_OR_RETURN(best_here, run_eval(done));
    }
    const bool stop_early = stopper && !last && stopper->ShouldStop();
    // A new best always gets a checkpoint: `best` must be downloadable.
    if ((tc.checkpoint_every > 0 && done % tc.checkpoint_every == 0) || last || reduced.stop || best_here || stop_early)
      RETURN_IF_ERROR(checkpoint(done, lr));
    if (best_here) RETURN_IF_ERROR(mark_best(done));
    if (stop_early) {
      if (leader && options.progress)
        std::fprintf(stderr,
                     "early stopping after step %lld: %s did not improve for %lld evaluations (best: step %lld)\n",
                     static_cast<long long>(done), tc.early_stopping->metric.c_str(),
                     static_cast<long long>(tc.early_stopping->patience),
                     static_cast<long long>(stopper->best_step().value_or(0)));
      stopped_early_at = done;
      break;
    }
    if (reduced.stop && !last) {
      // Every rank saw the same flag in the same all-reduce, so all stop at this step.
      RETURN_IF_ERROR(comm.Barrier());  // rank 0's checkpoint is committed before anyone exits
      if (leader && options.progress)
        std::fprintf(stderr, "\nstopped on request after step %lld; checkpoint written\n",
                     static_cast<long long>(done));
      TrainSummary stopped;
      stopped.preempted = true;
      stopped.steps = done;
      stopped.final_loss = step_loss;
      return stopped;
    }
  }
  if (!stopped_early_at && (start_step < total_steps || evaluator.has_eval())) {
    ASSIGN_OR_RETURN(const bool best_here, run_eval(total_steps));
    if (best_here) RETURN_IF_ERROR(mark_best(total_steps));  // the final checkpoint was written above
  }
  TrainSummary summary;
  summary.steps = stopped_early_at.value_or(total_steps);
  summary.final_loss = last_loss;
  summary.adapter_dir = config.output_dir + "/adapter";
  if (leader) {
    RETURN_IF_ERROR(SavePeftAdapter(*model, config.model.path, summary.adapter_dir));
    if (options.progress) std::fprintf(stderr, "\nadapter written to %s\n", summary.adapter_dir.c_str());
  }
  RETURN_IF_ERROR(comm.Barrier());
  return summary;
}

}  // namespace polytune::engine
