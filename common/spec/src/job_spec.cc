#include "polytune/spec/job_spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"
#include "polytune/common/status_macros.h"
#include "prep_config_internal.h"
#include "yaml_parser.h"

namespace polytune::spec {
namespace fs = std::filesystem;
namespace {
using internal::CheckDuplicateKeys;
using internal::Contains;
using internal::Parser;

absl::Status ParseResources(const Parser& p, const YAML::Node& root, SpecUse use, JobSpec& s) {
  const YAML::Node r = root["resources"];
  if (!r.IsDefined() || r.IsNull()) {
    if (use == SpecUse::kSubmission) return p.Error(root, "resources.world_size", "is required");
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(p.Keys(r, "resources", {"world_size", "max_restarts", "preemptible"}));
  if (!r["world_size"].IsDefined()) return p.Error(r, "resources", "must set world_size (data-parallel ranks)");
  Resources res;
  RETURN_IF_ERROR(p.Get(r, "resources", "world_size", &res.world_size, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(r, "resources", "world_size", res.world_size, 1));
  RETURN_IF_ERROR(p.Get(r, "resources", "max_restarts", &res.max_restarts, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(r, "resources", "max_restarts", res.max_restarts, 0));
  if (res.max_restarts > kMaxRestartsLimit)
    return p.Error(r["max_restarts"], "resources.max_restarts",
                   absl::StrCat("must be at most ", kMaxRestartsLimit, ", got ", res.max_restarts));
  RETURN_IF_ERROR(p.Get(r, "resources", "preemptible", &res.preemptible, "true or false"));
  s.resources = res;
  return absl::OkStatus();
}

absl::Status ParseModel(const Parser& p, const YAML::Node& model, JobSpec& s) {
  RETURN_IF_ERROR(p.Keys(model, "model", {"path", "quantization", "double_quant"}));
  RETURN_IF_ERROR(p.Path(model, "model", "path", &s.model.path));
  if (s.model.path.empty()) return p.Error(model, "model.path", "is required");
  std::string quant = "nf4";
  RETURN_IF_ERROR(p.Get(model, "model", "quantization", &quant, "none or nf4"));
  auto q = ParseQuantization(quant);
  if (!q.ok()) return p.Error(model["quantization"], "model.quantization", "must be none or nf4");
  s.model.quantization = *q;
  return p.Get(model, "model", "double_quant", &s.model.double_quant, "true or false");
}

absl::Status ParseLora(const Parser& p, const YAML::Node& lora, JobSpec& s) {
  RETURN_IF_ERROR(
      p.Keys(lora, "lora", {"r", "alpha", "dropout", "rslora", "target_modules", "layers", "init_adapter"}));
  LoraSettings& l = s.lora;
  RETURN_IF_ERROR(p.Get(lora, "lora", "r", &l.r, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(lora, "lora", "r", l.r, 1));
  RETURN_IF_ERROR(p.Number(lora, "lora", "alpha", &l.alpha));
  RETURN_IF_ERROR(p.Number(lora, "lora", "dropout", &l.dropout));
  if (l.dropout < 0 || l.dropout >= 1) return p.Error(lora["dropout"], "lora.dropout", "must be in [0, 1)");
  RETURN_IF_ERROR(p.Get(lora, "lora", "rslora", &l.rslora, "true or false"));
  if (lora["target_modules"].IsDefined() && !lora["target_modules"].IsNull()) {
    const YAML::Node tm = lora["target_modules"];
    if (!tm.IsSequence() || tm.size() == 0) return p.Error(tm, "lora.target_modules", "must be a non-empty list");
    l.target_modules.clear();
    for (const auto& m : tm) {
      const std::string name = m.IsScalar() ? m.Scalar() : "";
      if (!Contains(LoraModuleNames(), name))
        return p.Error(m, "lora.target_modules",
                       absl::StrCat("has unknown module '", name,
                                    "'; expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj"));
      l.target_modules.push_back(name);
    }
  }
  if (lora["layers"].IsDefined() && !lora["layers"].IsNull()) {
    const YAML::Node layers = lora["layers"];
    if (layers.IsScalar() && layers.Scalar() == "all") {
      l.layers.clear();
    } else if (layers.IsSequence() && layers.size() > 0) {
      for (const auto& n : layers) {
        try {
          const int64_t v = n.as<int64_t>();
          if (v < 0) return p.Error(n, "lora.layers", "entries must be non-negative layer indices");
          l.layers.push_back(v);
        } catch (const YAML::Exception&) {
          return p.Error(n, "lora.layers", "entries must be layer indices");
        }
      }
    } else {
      return p.Error(layers, "lora.layers", "must be 'all' or a non-empty list of layer indices");
    }
  }
  return p.Path(lora, "lora", "init_adapter", &s.init_adapter);
}

absl::Status ParseData(const Parser& p, const YAML::Node& data, JobSpec& s) {
  RETURN_IF_ERROR(p.Keys(data, "data",
                         {"train", "eval", "format", "max_seq_len", "tokenizer", "chat_template", "train_on_inputs",
                          "packing", "sampling", "prepare"}));
  auto& d = s.data;
  RETURN_IF_ERROR(p.Dataset(data, "data", "train", &d.train));
  if (d.train.empty()) return p.Error(data, "data.train", "is required");
  RETURN_IF_ERROR(p.Dataset(data, "data", "eval", &d.eval));
  RETURN_IF_ERROR(p.Get(data, "data", "format", &d.format, "a format name"));
  if (!Contains(DataFormatNames(), d.format))
    return p.Error(data["format"], "data.format",
                   absl::StrCat("must be auto, messages, alpaca, text or tokens, got '", d.format, "'"));
  RETURN_IF_ERROR(p.Path(data, "data", "tokenizer", &d.tokenizer));
  RETURN_IF_ERROR(p.Get(data, "data", "chat_template", &d.chat_template, "a built-in template name"));
  if (!d.chat_template.empty() && !Contains(BuiltinChatTemplateNames(), d.chat_template))
    return p.Error(data["chat_template"], "data.chat_template",
                   absl::StrCat("'", d.chat_template, "' is not a built-in template (llama3, chatml, mistral, plain)"));
  RETURN_IF_ERROR(p.Get(data, "data", "train_on_inputs", &d.train_on_inputs, "true or false"));
  RETURN_IF_ERROR(p.Get(data, "data", "packing", &d.packing, "true or false"));
  RETURN_IF_ERROR(p.Get(data, "data", "max_seq_len", &d.max_seq_len, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(data, "data", "max_seq_len", d.max_seq_len, 2));
  const YAML::Node sampling = data["sampling"];
  if (sampling.IsDefined() && !sampling.IsNull()) {
    RETURN_IF_ERROR(p.Keys(sampling, "data.sampling", {"strategy", "alpha", "max_epochs_per_language"}));
    std::string strategy = "natural";
    RETURN_IF_ERROR(p.Get(sampling, "data.sampling", "strategy", &strategy, "natural, temperature or unimax"));
    if (strategy == "natural") {
      d.sampling.strategy = SamplingStrategy::kNatural;
    } else if (strategy == "temperature") {
      d.sampling.strategy = SamplingStrategy::kTemperature;
    } else if (strategy == "unimax") {
      d.sampling.strategy = SamplingStrategy::kUnimax;
    } else {
      return p.Error(sampling["strategy"], "data.sampling.strategy",
                     absl::StrCat("must be natural, temperature or unimax, got '", strategy, "'"));
    }
    RETURN_IF_ERROR(p.Number(sampling, "data.sampling", "alpha", &d.sampling.alpha));
    if (d.sampling.alpha <= 0 || d.sampling.alpha > 1)
      return p.Error(sampling["alpha"], "data.sampling.alpha", "must be in (0, 1] (XLM-R and mT5 use 0.3)");
    RETURN_IF_ERROR(
        p.Number(sampling, "data.sampling", "max_epochs_per_language", &d.sampling.max_epochs_per_language));
    if (d.sampling.max_epochs_per_language <= 0)
      return p.Error(sampling["max_epochs_per_language"], "data.sampling.max_epochs_per_language", "must be positive");
  }
  const YAML::Node prepare = data["prepare"];
  if (prepare.IsDefined() && !prepare.IsNull()) {
    PrepConfig config;
    RETURN_IF_ERROR(internal::ParsePrepConfigNode(p, prepare, "data.prepare", &config));
    d.prepare = std::move(config);
  }
  return absl::OkStatus();
}

absl::Status ParseLanguageWeights(const Parser& p, const YAML::Node& t, JobSpec& s) {
  const YAML::Node w = t["language_weights"];
  if (!w.IsDefined() || w.IsNull()) return absl::OkStatus();
  auto& lw = s.training.language_weights;
  if (w.IsScalar()) {
    if (w.Scalar() == "none") {
      lw.mode = LanguageWeights::Mode::kNone;
    } else if (w.Scalar() == "inverse_frequency") {
      lw.mode = LanguageWeights::Mode::kInverseFrequency;
    } else {
      return p.Error(
          w, "training.language_weights",
          absl::StrCat("must be none, inverse_frequency or a mapping such as {es: 2.0}, got '", w.Scalar(), "'"));
    }
    return absl::OkStatus();
  }
  if (!w.IsMap())
    return p.Error(w, "training.language_weights", "must be none, inverse_frequency or a mapping such as {es: 2.0}");
  lw.mode = LanguageWeights::Mode::kExplicit;
  for (auto it = w.begin(); it != w.end(); ++it) {
    const std::string lang = it->first.IsScalar() ? it->first.Scalar() : "";
    const std::string key = absl::StrCat("training.language_weights.", lang);
    double v = 0;
    RETURN_IF_ERROR(p.Number(w, "training.language_weights", lang, &v));
    if (!(v > 0)) return p.Error(it->second, key, "must be a positive weight");
    lw.weights[lang] = v;
  }
  return absl::OkStatus();
}

absl::Status ParseEvalGenerate(const Parser& p, const YAML::Node& t, JobSpec& s) {
  const YAML::Node g = t["eval_generate"];
  if (!g.IsDefined() || g.IsNull()) return absl::OkStatus();
  const std::string k = "training.eval_generate";
  RETURN_IF_ERROR(p.Keys(g, k, {"every", "examples", "max_new_tokens"}));
  EvalGenerate eg;
  RETURN_IF_ERROR(p.Get(g, k, "every", &eg.every, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(g, k, "every", eg.every, 0));
  RETURN_IF_ERROR(p.Get(g, k, "examples", &eg.examples, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(g, k, "examples", eg.examples, 1));
  RETURN_IF_ERROR(p.Get(g, k, "max_new_tokens", &eg.max_new_tokens, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(g, k, "max_new_tokens", eg.max_new_tokens, 1));
  if (eg.max_new_tokens > 4096) return p.Error(g["max_new_tokens"], k + ".max_new_tokens", "must be at most 4096");
  if (s.data.eval.empty()) return p.Error(g, k, "needs data.eval (the examples it generates for)");
  if (eg.every > 0 && (s.training.eval_every == 0 || eg.every % s.training.eval_every != 0))
    return p.Error(g["every"], k + ".every",
                   absl::StrCat("must be a multiple of training.eval_every (", s.training.eval_every,
                                "), so generation figures join an evaluation; or 0 for the start and the end only"));
  s.training.eval_generate = eg;
  return absl::OkStatus();
}

absl::Status ParseEarlyStopping(const Parser& p, const YAML::Node& t, JobSpec& s) {
  const YAML::Node e = t["early_stopping"];
  if (!e.IsDefined() || e.IsNull()) return absl::OkStatus();
  const std::string k = "training.early_stopping";
  RETURN_IF_ERROR(p.Keys(e, k, {"metric", "mode", "patience", "min_delta"}));
  EarlyStopping es;
  RETURN_IF_ERROR(p.Get(e, k, "metric", &es.metric, "a metric name"));
  if (!Contains(EarlyStoppingMetricNames(), es.metric))
    return p.Error(e["metric"], k + ".metric",
                   absl::StrCat("'", es.metric, "' is not one of ", absl::StrJoin(EarlyStoppingMetricNames(), ", ")));
  // Losses fall as a model improves; every other metric rises.
  std::string mode = es.metric == "eval_loss" || es.metric == "eval_ppl" ? "min" : "max";
  RETURN_IF_ERROR(p.Get(e, k, "mode", &mode, "min or max"));
  if (mode != "min" && mode != "max")
    return p.Error(e["mode"], k + ".mode", absl::StrCat("must be min or max, got '", mode, "'"));
  es.mode = mode == "min" ? StopMode::kMin : StopMode::kMax;
  RETURN_IF_ERROR(p.Get(e, k, "patience", &es.patience, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(e, k, "patience", es.patience, 1));
  RETURN_IF_ERROR(p.Number(e, k, "min_delta", &es.min_delta));
  if (es.min_delta < 0) return p.Error(e["min_delta"], k + ".min_delta", "must not be negative");
  if (s.data.eval.empty()) return p.Error(e, k, "needs data.eval (early stopping watches evaluations)");
  if (s.training.eval_every == 0)
    return p.Error(e, k, "needs training.eval_every > 0 (with evaluations only at the start and end it cannot stop)");
  if (IsGenerationMetric(es.metric)) {
    if (!s.training.eval_generate)
      return p.Error(e["metric"], k + ".metric",
                     absl::StrCat("'", es.metric, "' comes from evaluation by generation; set training.eval_generate"));
    if (s.training.eval_generate->every == 0)
      return p.Error(e["metric"], k + ".metric",
                     absl::StrCat("'", es.metric,
                                  "' needs training.eval_generate.every > 0 (generation only at the "
                                  "start and end cannot stop a run)"));
  }
  s.training.early_stopping = es;
  return absl::OkStatus();
}

absl::Status ParseTraining(const Parser& p, const YAML::Node& t, JobSpec& s) {
  RETURN_IF_ERROR(p.Keys(t, "training",
                         {"max_steps",
                          "epochs",
                          "micro_batch_size",
                          "grad_accum_steps",
                          "lr",
                          "lr_schedule",
                          "warmup_steps",
                          "weight_decay",
                          "max_grad_norm",
                          "adam_beta1",
                          "adam_beta2",
                          "adam_epsilon",
                          "seed",
                          "gradient_checkpointing",
                          "checkpoint_keeps_projections",
                          "eval_every",
                          "checkpoint_every",
                          "device",
                          "compute_dtype",
                          "num_threads",
                          "grad_bucket_mb",
                          "on_nonfinite",
                          "eval_generate",
                          "early_stopping",
                          "language_weights"}));
  auto& tr = s.training;
  const std::string k = "training";
  RETURN_IF_ERROR(p.Get(t, k, "max_steps", &tr.max_steps, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(t, k, "max_steps", tr.max_steps, 0));
  RETURN_IF_ERROR(p.Get(t, k, "epochs", &tr.epochs, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(t, k, "epochs", tr.epochs, 1));
  RETURN_IF_ERROR(p.Get(t, k, "micro_batch_size", &tr.micro_batch_size, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(t, k, "micro_batch_size", tr.micro_batch_size, 1));
  RETURN_IF_ERROR(p.Get(t, k, "grad_accum_steps", &tr.grad_accum_steps, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(t, k, "grad_accum_steps", tr.grad_accum_steps, 1));
  RETURN_IF_ERROR(p.Number(t, k, "lr", &tr.lr));
  if (tr.lr <= 0) return p.Error(t["lr"], "training.lr", "must be positive");
  std::string sched = "cosine";
  RETURN_IF_ERROR(p.Get(t, k, "lr_schedule", &sched, "cosine, linear or constant"));
  if (sched == "cosine") {
    tr.lr_schedule = LrSchedule::kCosine;
  } else if (sched == "linear") {
    tr.lr_schedule = LrSchedule::kLinear;
  } else if (sched == "constant") {
    tr.lr_schedule = LrSchedule::kConstant;
  } else {
    return p.Error(t["lr_schedule"], "training.lr_schedule",
                   absl::StrCat("must be cosine, linear or constant, got '", sched, "'"));
  }
  RETURN_IF_ERROR(p.Get(t, k, "warmup_steps", &tr.warmup_steps, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(t, k, "warmup_steps", tr.warmup_steps, 0));
  RETURN_IF_ERROR(p.Number(t, k, "weight_decay", &tr.weight_decay));
  if (tr.weight_decay < 0) return p.Error(t["weight_decay"], "training.weight_decay", "must not be negative");
  RETURN_IF_ERROR(p.Number(t, k, "max_grad_norm", &tr.max_grad_norm));
  if (tr.max_grad_norm < 0)
    return p.Error(t["max_grad_norm"], "training.max_grad_norm", "must not be negative (0 disables clipping)");
  RETURN_IF_ERROR(p.Number(t, k, "adam_beta1", &tr.adam_beta1));
  RETURN_IF_ERROR(p.Number(t, k, "adam_beta2", &tr.adam_beta2));
  if (tr.adam_beta1 < 0 || tr.adam_beta1 >= 1)
    return p.Error(t["adam_beta1"], "training.adam_beta1", "must be in [0, 1)");
  if (tr.adam_beta2 < 0 || tr.adam_beta2 >= 1)
    return p.Error(t["adam_beta2"], "training.adam_beta2", "must be in [0, 1)");
  RETURN_IF_ERROR(p.Number(t, k, "adam_epsilon", &tr.adam_epsilon));
  if (tr.adam_epsilon <= 0) return p.Error(t["adam_epsilon"], "training.adam_epsilon", "must be positive");
  RETURN_IF_ERROR(p.Get(t, k, "seed", &tr.seed, "a non-negative integer"));
  RETURN_IF_ERROR(p.Get(t, k, "gradient_checkpointing", &tr.gradient_checkpointing, "true or false"));
  RETURN_IF_ERROR(p.Get(t, k, "checkpoint_keeps_projections", &tr.checkpoint_keeps_projections, "true or false"));
  RETURN_IF_ERROR(p.Get(t, k, "eval_every", &tr.eval_every, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(t, k, "eval_every", tr.eval_every, 0));
  RETURN_IF_ERROR(p.Get(t, k, "checkpoint_every", &tr.checkpoint_every, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(t, k, "checkpoint_every", tr.checkpoint_every, 0));
  RETURN_IF_ERROR(p.Get(t, k, "device", &tr.device, "auto, cpu, cuda or cuda:N"));
  if (tr.device != "auto" && tr.device != "cpu" && tr.device.rfind("cuda", 0) != 0)
    return p.Error(t["device"], "training.device", "must be auto, cpu, cuda or cuda:N");
  RETURN_IF_ERROR(p.Get(t, k, "compute_dtype", &tr.compute_dtype, "auto, float32 or bfloat16"));
  if (tr.compute_dtype != "auto" && tr.compute_dtype != "float32" && tr.compute_dtype != "bfloat16")
    return p.Error(t["compute_dtype"], "training.compute_dtype", "must be auto, float32 or bfloat16");
  RETURN_IF_ERROR(p.Get(t, k, "num_threads", &tr.num_threads, "an integer"));
  RETURN_IF_ERROR(p.AtLeast(t, k, "num_threads", tr.num_threads, 0));
  RETURN_IF_ERROR(p.Number(t, k, "grad_bucket_mb", &tr.grad_bucket_mb));
  if (!(tr.grad_bucket_mb >= 0))
    return p.Error(t["grad_bucket_mb"], "training.grad_bucket_mb",
                   "must not be negative (0: one all-reduce after backward)");
  std::string on_nonfinite = "fail";
  RETURN_IF_ERROR(p.Get(t, k, "on_nonfinite", &on_nonfinite, "fail or skip_step"));
  if (on_nonfinite == "fail") {
    tr.on_nonfinite = OnNonFinite::kFail;
  } else if (on_nonfinite == "skip_step") {
    tr.on_nonfinite = OnNonFinite::kSkipStep;
  } else {
    return p.Error(t["on_nonfinite"], "training.on_nonfinite",
                   absl::StrCat("must be fail or skip_step, got '", on_nonfinite, "'"));
  }
  RETURN_IF_ERROR(ParseEvalGenerate(p, t, s));
  RETURN_IF_ERROR(ParseLanguageWeights(p, t, s));
  return ParseEarlyStopping(p, t, s);
}

}  // namespace

const std::vector<std::string>& EarlyStoppingMetricNames() {
  static const auto* names = new std::vector<std::string>{"eval_loss", "eval_ppl",    "eval_accuracy",  "chrf",
                                                          "chrfpp",    "exact_match", "label_accuracy", "macro_f1"};
  return *names;
}

bool IsGenerationMetric(const std::string& metric) { return metric.rfind("eval_", 0) != 0; }

absl::StatusOr<Quantization> ParseQuantization(const std::string& name) {
  if (name == "none") return Quantization::kNone;
  if (name == "nf4") return Quantization::kNf4;
  return absl::InvalidArgumentError(absl::StrCat("quantization '", name, "' is not supported; use none or nf4"));
}

const char* QuantizationName(Quantization q) { return q == Quantization::kNf4 ? "nf4" : "none"; }

const char* SamplingStrategyName(SamplingStrategy s) {
  switch (s) {
    case SamplingStrategy::kTemperature:
      return "temperature";
    case SamplingStrategy::kUnimax:
      return "unimax";
    case SamplingStrategy::kNatural:
      break;
  }
  return "natural";
}

const char* LrScheduleName(LrSchedule schedule) {
  switch (schedule) {
    case LrSchedule::kCosine:
      return "cosine";
    case LrSchedule::kLinear:
      return "linear";
    case LrSchedule::kConstant:
      return "constant";
  }
  return "?";
}

const std::vector<std::string>& DataFormatNames() {
  static const auto* names = new std::vector<std::string>{"auto", "messages", "alpaca", "text", "tokens"};
  return *names;
}

const std::vector<std::string>& BuiltinChatTemplateNames() {
  static const auto* names = new std::vector<std::string>{"llama3", "chatml", "mistral", "plain"};
  return *names;
}

const std::vector<std::string>& LoraModuleNames() {
  static const auto* names =
      new std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return *names;
}

double LoraSettings::Scaling() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

bool LoraSettings::TargetsLayer(int64_t layer) const {
  return layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end();
}

bool LoraSettings::TargetsModule(const std::string& module_name) const { return Contains(target_modules, module_name); }

const std::string& DatasetRef::Empty() {
  static const auto* empty = new std::string();
  return *empty;
}

// The spec below its loaded root; throws YAML::Exception on a conversion the checks missed.
static absl::StatusOr<JobSpec> ParseRoot(const YAML::Node& root, const std::string& source, const std::string& base_dir,
                                         SpecUse use);

absl::StatusOr<JobSpec> ParseJobSpec(const std::string& yaml_text, const std::string& source,
                                     const std::string& base_dir, SpecUse use) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", e.mark.line + 1, ": invalid YAML: ", e.msg));
  }
  // The checks below refuse every malformed shape with a message; this is the net under them,
  // so a yaml-cpp conversion they missed is still an error naming the line, never a crash.
  try {
    return ParseRoot(root, source, base_dir, use);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", e.mark.line + 1, ": malformed spec: ", e.msg));
  }
}

static absl::StatusOr<JobSpec> ParseRoot(const YAML::Node& root, const std::string& source, const std::string& base_dir,
                                         SpecUse use) {
  Parser p(source, base_dir, use);
  JobSpec s;
  RETURN_IF_ERROR(CheckDuplicateKeys(p, root, ""));
  RETURN_IF_ERROR(p.Keys(root, "", {"model", "lora", "data", "training", "output_dir", "resources"}));
  RETURN_IF_ERROR(ParseResources(p, root, use, s));
  std::vector<const char*> required = {"model", "data"};
  if (use == SpecUse::kTraining) required.push_back("output_dir");
  for (const char* key : required)
    if (!root[key].IsDefined()) return p.Error(root, key, "is required");
  RETURN_IF_ERROR(ParseModel(p, root["model"], s));
  if (root["lora"].IsDefined()) RETURN_IF_ERROR(ParseLora(p, root["lora"], s));
  RETURN_IF_ERROR(ParseData(p, root["data"], s));
  if (root["training"].IsDefined()) RETURN_IF_ERROR(ParseTraining(p, root["training"], s));
  if (use == SpecUse::kTraining) {
    RETURN_IF_ERROR(p.Path(root, "", "output_dir", &s.output_dir));
    if (s.output_dir.empty()) return p.Error(root, "output_dir", "is required");
  } else {
    std::string ignored;  // still type-checked, so a malformed value is refused everywhere alike
    RETURN_IF_ERROR(p.Get(root, "", "output_dir", &ignored, "a path"));
  }
  return s;
}

absl::StatusOr<JobSpec> LoadJobSpec(const std::string& path, SpecUse use) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseJobSpec(text, path, fs::absolute(path).parent_path().string(), use);
}

}  // namespace polytune::spec
