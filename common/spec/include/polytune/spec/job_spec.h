// The job specification: one typed value for what `polytune train` runs locally and what
// `polytune submit` sends to a coordinator (documented in docs/job-spec.md).
//
// It is parsed and validated once, by ParseJobSpec, with one set of rules wherever it is
// read: the CLI before uploading, the coordinator on submit (clients other than our CLI get
// the same refusals), the worker and the rank. An unknown key or a value of the wrong type or
// range is an error naming the source, the line and the dotted key. Between processes it
// travels as canonical YAML produced from the type (ToCanonicalYaml), never edited as text.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/spec/prep_config.h"

namespace polytune::spec {

enum class Quantization { kNone, kNf4 };
absl::StatusOr<Quantization> ParseQuantization(const std::string& name);  // "none" / "nf4"
const char* QuantizationName(Quantization q);

enum class LrSchedule { kCosine, kLinear, kConstant };

// What a step with a non-finite loss or gradient norm does: stop the run with an error naming
// the step (no adapter is written), or skip the update and go on.
enum class OnNonFinite { kFail, kSkipStep };

// training.eval_generate: evaluation by generation on the first `examples` examples of
// data.eval that have a reference answer or label, at every `every`-th step (a multiple of
// eval_every, so its figures join that evaluation's record), at the start and at the end.
struct EvalGenerate {
  int64_t every = 0;  // 0: only at the start and the end
  int64_t examples = 32;
  int64_t max_new_tokens = 64;
};

// training.early_stopping: stop once `patience` evaluations in a row have not improved the
// metric by more than min_delta; the best evaluation's step gets a checkpoint (`best`).
enum class StopMode { kMin, kMax };
struct EarlyStopping {
  std::string metric = "eval_loss";  // see EarlyStoppingMetricNames()
  StopMode mode = StopMode::kMin;
  int64_t patience = 3;
  double min_delta = 0.0;
};
const std::vector<std::string>& EarlyStoppingMetricNames();
// Whether the metric comes from evaluation by generation (needs training.eval_generate).
bool IsGenerationMetric(const std::string& metric);
const char* LrScheduleName(LrSchedule schedule);

// Names the text pipeline accepts; tests check polytune::text agrees with these lists.
const std::vector<std::string>& DataFormatNames();           // auto, messages, alpaca, text, tokens
const std::vector<std::string>& BuiltinChatTemplateNames();  // llama3, chatml, mistral, plain
const std::vector<std::string>& LoraModuleNames();           // q_proj ... down_proj (PEFT naming)

struct LoraSettings {
  int64_t r = 16;
  double alpha = 32;
  double dropout = 0.05;
  bool rslora = false;
  std::vector<std::string> target_modules = LoraModuleNames();
  std::vector<int64_t> layers;  // empty: all layers
  double Scaling() const;       // alpha / r, or alpha / sqrt(r) with rsLoRA
  bool TargetsLayer(int64_t layer) const;
  bool TargetsModule(const std::string& module_name) const;
};

// A dataset: a file on the machine that reads the spec, or an artifact the coordinator holds
// (uploaded by `polytune submit`), which a worker fetches and verifies before its rank starts.
class DatasetRef {
 public:
  enum class Kind { kNone, kPath, kArtifact };
  DatasetRef() = default;
  static DatasetRef Path(std::string path) { return DatasetRef(Kind::kPath, std::move(path)); }
  // `name`: the file's original name (no folder), so errors about its lines name it.
  static DatasetRef Artifact(std::string sha256, std::string name = "") {
    DatasetRef d(Kind::kArtifact, std::move(sha256));
    d.name_ = std::move(name);
    return d;
  }
  Kind kind() const { return kind_; }
  bool empty() const { return kind_ == Kind::kNone; }
  bool is_path() const { return kind_ == Kind::kPath; }
  bool is_artifact() const { return kind_ == Kind::kArtifact; }
  // The local path (empty unless is_path()) and the artifact's sha256 (empty unless is_artifact()).
  const std::string& path() const { return kind_ == Kind::kPath ? value_ : Empty(); }
  const std::string& sha256() const { return kind_ == Kind::kArtifact ? value_ : Empty(); }
  const std::string& name() const { return name_; }  // artifacts: the uploaded file's name, if known
  bool operator==(const DatasetRef& o) const { return kind_ == o.kind_ && value_ == o.value_ && name_ == o.name_; }
  bool operator!=(const DatasetRef& o) const { return !(*this == o); }

 private:
  DatasetRef(Kind kind, std::string value) : kind_(kind), value_(std::move(value)) {}
  static const std::string& Empty();
  Kind kind_ = Kind::kNone;
  std::string value_;
  std::string name_;
};

// data.sampling: how often each language's examples are visited, over the examples' `lang`.
// natural: as they are; temperature: language l with probability n_l^alpha / sum n^alpha;
// unimax: a uniform share per language, capped at max_epochs_per_language passes over it
// (Chung et al. 2023). One "epoch" is still as many examples as the data holds.
enum class SamplingStrategy { kNatural, kTemperature, kUnimax };
struct LanguageSampling {
  SamplingStrategy strategy = SamplingStrategy::kNatural;
  double alpha = 0.3;
  double max_epochs_per_language = 4;
};
const char* SamplingStrategyName(SamplingStrategy s);

// training.language_weights: per-language loss weights. The loss is the weighted sum over the
// step's target tokens divided by their summed weight (all micro-batches, all ranks).
// inverse_frequency: w_l = N / (L * n_l) over the training examples (sklearn's "balanced");
// explicit: the given weights, 1 for languages not named.
struct LanguageWeights {
  enum class Mode { kNone, kInverseFrequency, kExplicit };
  Mode mode = Mode::kNone;
  std::map<std::string, double> weights;  // explicit only
};

struct Resources {
  int32_t world_size = 1;  // data-parallel ranks, one device each
  // Restarts from the last checkpoint after infrastructure failures (a lost worker, a rank
  // killed by a signal or crashing) before the job fails; bad input never restarts.
  int32_t max_restarts = 3;
  // A higher-priority pending job may stop this one (checkpoint, requeue) to take its devices.
  bool preemptible = false;
};
constexpr int32_t kMaxRestartsLimit = 100;

struct JobSpec {
  struct Model {
    std::string path;
    Quantization quantization = Quantization::kNf4;
    bool double_quant = true;
  } model;
  LoraSettings lora;
  std::string init_adapter;  // empty: fresh adapter
  struct Data {
    DatasetRef train;
    DatasetRef eval;              // empty: no evaluation
    std::string format = "auto";  // auto | messages | alpaca | text | tokens
    int64_t max_seq_len = 1024;
    std::string tokenizer;      // folder with tokenizer.json; empty: model.path
    std::string chat_template;  // built-in name; empty: the tokenizer's own
    bool train_on_inputs = false;
    bool packing = false;
    LanguageSampling sampling;
    // Prepared on rank 0 before training (cached by input and config hash); every rank
    // trains on the prepared data.
    std::optional<PrepConfig> prepare;
  } data;
  struct Training {
    int64_t max_steps = 0;  // 0: derived from epochs
    int64_t epochs = 1;
    int64_t micro_batch_size = 4;
    int64_t grad_accum_steps = 1;
    double lr = 2e-4;
    LrSchedule lr_schedule = LrSchedule::kCosine;
    int64_t warmup_steps = 0;
    double weight_decay = 0.0;
    double max_grad_norm = 1.0;  // 0: no clipping
    double adam_beta1 = 0.9;
    double adam_beta2 = 0.999;
    double adam_epsilon = 1e-8;
    uint64_t seed = 42;
    bool gradient_checkpointing = true;
    // With checkpointing: keep the layers' frozen projection products for backward, so the
    // recompute skips those GEMMs (faster, more memory; identical results).
    bool checkpoint_keeps_projections = false;
    int64_t eval_every = 0;        // 0: only at the start and the end
    int64_t checkpoint_every = 0;  // 0: only at the end
    std::string device = "auto";   // auto | cpu | cuda | cuda:N
    // The dtype of the frozen base's matmuls and the activations (LoRA weights and the
    // optimizer stay fp32): auto (bfloat16 on CUDA, float32 on CPU) | float32 | bfloat16.
    std::string compute_dtype = "auto";
    int64_t num_threads = 0;       // 0: all cores divided among local ranks
    // Data parallel: gradients are all-reduced in buckets of about this size while backward
    // still runs (as DDP's bucket_cap_mb); 0: one all-reduce after backward.
    double grad_bucket_mb = 4.0;
    OnNonFinite on_nonfinite = OnNonFinite::kFail;
    std::optional<EvalGenerate> eval_generate;
    std::optional<EarlyStopping> early_stopping;
    LanguageWeights language_weights;
  } training;
  std::string output_dir;              // training: required; submission: ignored (workers choose)
  std::optional<Resources> resources;  // submission: required
};

// What the spec is read for; the rules differ only where the use demands it.
enum class SpecUse {
  // `polytune train` and the ranks a worker starts: output_dir is required, datasets must be
  // local paths, `resources` is allowed and ignored.
  kTraining,
  // `polytune submit` and the coordinator: resources.world_size is required, output_dir is
  // dropped, datasets may be artifacts; with no base_dir (the coordinator) every path must be
  // absolute, since relative ones would resolve on the wrong machine.
  kSubmission,
};

// Parses YAML text. `source` names it in errors ("job.yaml", "submitted spec"); relative
// paths resolve against `base_dir` (refused when it is empty).
absl::StatusOr<JobSpec> ParseJobSpec(const std::string& yaml_text, const std::string& source,
                                     const std::string& base_dir, SpecUse use);
// Reads and parses a file; relative paths resolve against its folder.
absl::StatusOr<JobSpec> LoadJobSpec(const std::string& path, SpecUse use);

// The keys that decide what a training run computes, flattened ("training.lr" -> "0.002"),
// for telling whether a checkpoint belongs to this spec: everything except where it runs and
// writes (output_dir, resources, training.device/num_threads/grad_bucket_mb/
// checkpoint_keeps_projections: speed and memory only), how often it evaluates or
// checkpoints, and the dataset paths (a run records the datasets' content hashes instead).
std::map<std::string, std::string> RunDefiningKeys(const JobSpec& spec);

// Every field, defaults included, in a fixed order, numbers with round-trip precision:
// ParseJobSpec(ToCanonicalYaml(s)) reproduces s exactly.
std::string ToCanonicalYaml(const JobSpec& spec);

}  // namespace polytune::spec
