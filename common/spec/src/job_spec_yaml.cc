// ToCanonicalYaml: the one writer of job specs. Block style, every key in the parser's order,
// strings double-quoted and doubles with 17 significant digits, so the text is a pure
// function of the value and parses back to the same value.
#include <yaml-cpp/yaml.h>

#include "polytune/spec/job_spec.h"
#include "prep_config_internal.h"

namespace polytune::spec {
namespace {

void Str(YAML::Emitter& e, const char* key, const std::string& v) {
  e << YAML::Key << key << YAML::Value;
  if (v.empty()) {
    e << YAML::Null;
  } else {
    e << YAML::DoubleQuoted << v;
  }
}

void Dataset(YAML::Emitter& e, const char* key, const DatasetRef& d) {
  e << YAML::Key << key << YAML::Value;
  if (d.is_artifact()) {
    e << YAML::BeginMap << YAML::Key << "sha256" << YAML::Value << YAML::DoubleQuoted << d.sha256();
    if (!d.name().empty()) e << YAML::Key << "name" << YAML::Value << YAML::DoubleQuoted << d.name();
    e << YAML::EndMap;
  } else if (d.is_path()) {
    e << YAML::DoubleQuoted << d.path();
  } else {
    e << YAML::Null;
  }
}

template <typename T>
void Val(YAML::Emitter& e, const char* key, const T& v) {
  e << YAML::Key << key << YAML::Value << v;
}

}  // namespace

std::string ToCanonicalYaml(const JobSpec& s) {
  YAML::Emitter e;
  e.SetDoublePrecision(17);
  e.SetBoolFormat(YAML::TrueFalseBool);
  e << YAML::BeginMap;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  Str(e, "path", s.model.path);
  Val(e, "quantization", std::string(QuantizationName(s.model.quantization)));
  Val(e, "double_quant", s.model.double_quant);
  e << YAML::EndMap;

  e << YAML::Key << "lora" << YAML::Value << YAML::BeginMap;
  Val(e, "r", s.lora.r);
  Val(e, "alpha", s.lora.alpha);
  Val(e, "dropout", s.lora.dropout);
  Val(e, "rslora", s.lora.rslora);
  e << YAML::Key << "target_modules" << YAML::Value << YAML::Flow << s.lora.target_modules;
  e << YAML::Key << "layers" << YAML::Value;
  if (s.lora.layers.empty()) {
    e << "all";
  } else {
    e << YAML::Flow << s.lora.layers;
  }
  Str(e, "init_adapter", s.init_adapter);
  e << YAML::EndMap;

  e << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  Dataset(e, "train", s.data.train);
  Dataset(e, "eval", s.data.eval);
  Val(e, "format", s.data.format);
  Val(e, "max_seq_len", s.data.max_seq_len);
  Str(e, "tokenizer", s.data.tokenizer);
  Str(e, "chat_template", s.data.chat_template);
  Val(e, "train_on_inputs", s.data.train_on_inputs);
  Val(e, "packing", s.data.packing);
  e << YAML::Key << "sampling" << YAML::Value << YAML::BeginMap;
  Val(e, "strategy", std::string(SamplingStrategyName(s.data.sampling.strategy)));
  Val(e, "alpha", s.data.sampling.alpha);
  Val(e, "max_epochs_per_language", s.data.sampling.max_epochs_per_language);
  e << YAML::EndMap;
  e << YAML::Key << "prepare" << YAML::Value;
  if (s.data.prepare.has_value()) {
    internal::EmitPrepConfig(e, *s.data.prepare);
  } else {
    e << YAML::Null;
  }
  e << YAML::EndMap;

  const auto& t = s.training;
  e << YAML::Key << "training" << YAML::Value << YAML::BeginMap;
  Val(e, "max_steps", t.max_steps);
  Val(e, "epochs", t.epochs);
  Val(e, "micro_batch_size", t.micro_batch_size);
  Val(e, "grad_accum_steps", t.grad_accum_steps);
  Val(e, "lr", t.lr);
  Val(e, "lr_schedule", std::string(LrScheduleName(t.lr_schedule)));
  Val(e, "warmup_steps", t.warmup_steps);
  Val(e, "weight_decay", t.weight_decay);
  Val(e, "max_grad_norm", t.max_grad_norm);
  Val(e, "adam_beta1", t.adam_beta1);
  Val(e, "adam_beta2", t.adam_beta2);
  Val(e, "adam_epsilon", t.adam_epsilon);
  Val(e, "seed", t.seed);
  Val(e, "gradient_checkpointing", t.gradient_checkpointing);
  Val(e, "checkpoint_keeps_projections", t.checkpoint_keeps_projections);
  Val(e, "eval_every", t.eval_every);
  Val(e, "checkpoint_every", t.checkpoint_every);
  Val(e, "device", t.device);
  Val(e, "compute_dtype", t.compute_dtype);
  Val(e, "num_threads", t.num_threads);
  Val(e, "grad_bucket_mb", t.grad_bucket_mb);
  Val(e, "on_nonfinite", std::string(t.on_nonfinite == OnNonFinite::kFail ? "fail" : "skip_step"));
  if (t.eval_generate) {
    e << YAML::Key << "eval_generate" << YAML::Value << YAML::BeginMap;
    Val(e, "every", t.eval_generate->every);
    Val(e, "examples", t.eval_generate->examples);
    Val(e, "max_new_tokens", t.eval_generate->max_new_tokens);
    e << YAML::EndMap;
  }
  if (t.early_stopping) {
    e << YAML::Key << "early_stopping" << YAML::Value << YAML::BeginMap;
    Val(e, "metric", t.early_stopping->metric);
    Val(e, "mode", std::string(t.early_stopping->mode == StopMode::kMin ? "min" : "max"));
    Val(e, "patience", t.early_stopping->patience);
    Val(e, "min_delta", t.early_stopping->min_delta);
    e << YAML::EndMap;
  }
  e << YAML::Key << "language_weights" << YAML::Value;
  switch (t.language_weights.mode) {
    case LanguageWeights::Mode::kNone:
      e << "none";
      break;
    case LanguageWeights::Mode::kInverseFrequency:
      e << "inverse_frequency";
      break;
    case LanguageWeights::Mode::kExplicit:
      e << YAML::BeginMap;
      for (const auto& [lang, w] : t.language_weights.weights) e << YAML::Key << lang << YAML::Value << w;
      e << YAML::EndMap;
      break;
  }
  e << YAML::EndMap;

  if (!s.output_dir.empty()) Str(e, "output_dir", s.output_dir);
  if (s.resources) {
    e << YAML::Key << "resources" << YAML::Value << YAML::BeginMap;
    Val(e, "world_size", s.resources->world_size);
    Val(e, "max_restarts", s.resources->max_restarts);
    Val(e, "preemptible", s.resources->preemptible);
    e << YAML::EndMap;
  }
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

namespace {

void Flatten(const YAML::Node& node, const std::string& path, std::map<std::string, std::string>* out) {
  if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it)
      Flatten(it->second, path.empty() ? it->first.Scalar() : path + "." + it->first.Scalar(), out);
  } else if (node.IsSequence()) {
    std::string joined;
    for (const auto& item : node) joined += (joined.empty() ? "" : ",") + item.Scalar();
    (*out)[path] = "[" + joined + "]";
  } else {
    (*out)[path] = node.IsNull() ? "~" : node.Scalar();
  }
}

}  // namespace

std::map<std::string, std::string> RunDefiningKeys(const JobSpec& spec) {
  std::map<std::string, std::string> keys;
  Flatten(YAML::Load(ToCanonicalYaml(spec)), "", &keys);
  for (auto it = keys.begin(); it != keys.end();) {
    const std::string& k = it->first;
    const bool excluded = k == "output_dir" || k.rfind("resources.", 0) == 0 || k.rfind("data.train", 0) == 0 ||
                          k.rfind("data.eval", 0) == 0 || k == "training.device" || k == "training.num_threads" ||
                          k == "training.grad_bucket_mb" || k == "training.checkpoint_keeps_projections" ||
                          k == "training.eval_every" || k == "training.checkpoint_every" ||
                          k == "training.on_nonfinite" || k.rfind("training.eval_generate.", 0) == 0;
    it = excluded ? keys.erase(it) : std::next(it);
  }
  return keys;
}

}  // namespace polytune::spec
