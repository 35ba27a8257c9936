#include "polytune/engine/train_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "polytune/common/file_util.h"
#include "polytune/text/chat_template.h"
#include "polytune/text/examples.h"

namespace polytune::engine {
namespace fs = std::filesystem;
namespace {

class Parser {
 public:
  Parser(std::string source, std::string base_dir) : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  absl::Status Error(const YAML::Node& node, const std::string& key, const std::string& why) const {
    std::string where = source_;
    if (node.IsDefined() && node.Mark().line >= 0) where = absl::StrCat(source_, ":", node.Mark().line + 1);
    return absl::InvalidArgumentError(absl::StrCat(where, ": '", key, "' ", why));
  }

  // Checks that `node` is a map whose keys are all in `allowed`.
  absl::Status Keys(const YAML::Node& node, const std::string& path, const std::vector<std::string>& allowed) const {
    if (!node.IsMap()) return Error(node, path.empty() ? "(top level)" : path, "must be a mapping");
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string key = it->first.as<std::string>();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
        return Error(it->first, path.empty() ? key : absl::StrCat(path, ".", key),
                     absl::StrCat("is not a known key; expected one of: ", absl::StrJoin(allowed, ", ")));
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Get(const YAML::Node& parent, const std::string& path, const std::string& key, T* out,
                   const char* type_name) const {
    YAML::Node n = parent[key];
    if (!n.IsDefined() || n.IsNull()) return absl::OkStatus();
    const std::string full = path.empty() ? key : absl::StrCat(path, ".", key);
    if (!n.IsScalar()) return Error(n, full, absl::StrCat("must be ", type_name));
    try {
      *out = n.as<T>();
    } catch (const YAML::Exception&) {
      return Error(n, full, absl::StrCat("must be ", type_name, ", got '", n.Scalar(), "'"));
    }
    return absl::OkStatus();
  }

  absl::Status Path(const YAML::Node& parent, const std::string& path, const std::string& key, std::string* out) const {
    std::string value;
    absl::Status st = Get(parent, path, key, &value, "a path");
    if (!st.ok() || value.empty()) return st;
    fs::path p(value);
    *out = p.is_absolute() ? value : (fs::path(base_dir_) / p).lexically_normal().string();
    return absl::OkStatus();
  }

  absl::Status Positive(const YAML::Node& parent, const std::string& path, const std::string& key, int64_t value,
                        int64_t min) const {
    if (value < min)
      return Error(parent[key], absl::StrCat(path, ".", key), absl::StrCat("must be at least ", min, ", got ", value));
    return absl::OkStatus();
  }

 private:
  std::string source_;
  std::string base_dir_;
};

#define RETURN_IF_ERROR_LOCAL(expr) \
  do {                              \
    absl::Status _s = (expr);       \
    if (!_s.ok()) return _s;        \
  } while (0)

}  // namespace

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

absl::StatusOr<TrainConfig> ParseTrainConfig(const std::string& yaml_text, const std::string& source,
                                             const std::string& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", e.mark.line + 1, ": invalid YAML: ", e.msg));
  }
  Parser p(source, base_dir);
  TrainConfig c;
  RETURN_IF_ERROR_LOCAL(p.Keys(root, "", {"model", "lora", "data", "training", "output_dir"}));

  for (const char* required : {"model", "data", "output_dir"})
    if (!root[required].IsDefined()) return p.Error(root, required, "is required");

  const YAML::Node model = root["model"];
  RETURN_IF_ERROR_LOCAL(p.Keys(model, "model", {"path", "quantization", "double_quant"}));
  RETURN_IF_ERROR_LOCAL(p.Path(model, "model", "path", &c.model.path));
  if (c.model.path.empty()) return p.Error(model, "model.path", "is required");
  std::string quant = "nf4";
  RETURN_IF_ERROR_LOCAL(p.Get(model, "model", "quantization", &quant, "none or nf4"));
  auto q = ParseQuantization(quant);
  if (!q.ok()) return p.Error(model["quantization"], "model.quantization", "must be none or nf4");
  c.model.quantization = *q;
  RETURN_IF_ERROR_LOCAL(p.Get(model, "model", "double_quant", &c.model.double_quant, "true or false"));

  if (root["lora"].IsDefined()) {
    const YAML::Node lora = root["lora"];
    RETURN_IF_ERROR_LOCAL(
        p.Keys(lora, "lora", {"r", "alpha", "dropout", "rslora", "target_modules", "layers", "init_adapter"}));
    RETURN_IF_ERROR_LOCAL(p.Get(lora, "lora", "r", &c.lora.r, "an integer"));
    RETURN_IF_ERROR_LOCAL(p.Positive(lora, "lora", "r", c.lora.r, 1));
    RETURN_IF_ERROR_LOCAL(p.Get(lora, "lora", "alpha", &c.lora.alpha, "a number"));
    RETURN_IF_ERROR_LOCAL(p.Get(lora, "lora", "dropout", &c.lora.dropout, "a number"));
    if (c.lora.dropout < 0 || c.lora.dropout >= 1) return p.Error(lora["dropout"], "lora.dropout", "must be in [0, 1)");
    RETURN_IF_ERROR_LOCAL(p.Get(lora, "lora", "rslora", &c.lora.rslora, "true or false"));
    if (lora["target_modules"].IsDefined() && !lora["target_modules"].IsNull()) {
      const YAML::Node tm = lora["target_modules"];
      if (!tm.IsSequence() || tm.size() == 0) return p.Error(tm, "lora.target_modules", "must be a non-empty list");
      c.lora.target_modules.clear();
      for (const auto& m : tm) {
        ProjKind kind;
        const std::string name = m.IsScalar() ? m.Scalar() : "";
        if (!ParseProjName(name, &kind))
          return p.Error(m, "lora.target_modules",
                         absl::StrCat("has unknown module '", name,
                                      "'; expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj"));
        c.lora.target_modules.push_back(name);
      }
    }
    if (lora["layers"].IsDefined() && !lora["layers"].IsNull()) {
      const YAML::Node layers = lora["layers"];
      if (layers.IsScalar() && layers.Scalar() == "all") {
        c.lora.layers.clear();
      } else if (layers.IsSequence() && layers.size() > 0) {
        for (const auto& l : layers) {
          try {
            int64_t v = l.as<int64_t>();
            if (v < 0) return p.Error(l, "lora.layers", "entries must be non-negative layer indices");
            c.lora.layers.push_back(v);
          } catch (const YAML::Exception&) {
            return p.Error(l, "lora.layers", "entries must be layer indices");
          }
        }
      } else {
        return p.Error(layers, "lora.layers", "must be 'all' or a non-empty list of layer indices");
      }
    }
    RETURN_IF_ERROR_LOCAL(p.Path(lora, "lora", "init_adapter", &c.init_adapter));
  }

  const YAML::Node data = root["data"];
  RETURN_IF_ERROR_LOCAL(
      p.Keys(data, "data",
             {"train", "eval", "format", "max_seq_len", "tokenizer", "chat_template", "train_on_inputs", "packing"}));
  RETURN_IF_ERROR_LOCAL(p.Path(data, "data", "train", &c.data.train));
  if (c.data.train.empty()) return p.Error(data, "data.train", "is required");
  RETURN_IF_ERROR_LOCAL(p.Path(data, "data", "eval", &c.data.eval));
  RETURN_IF_ERROR_LOCAL(p.Get(data, "data", "format", &c.data.format, "a format name"));
  if (!text::ParseDataFormat(c.data.format).ok())
    return p.Error(data["format"], "data.format",
                   absl::StrCat("must be auto, messages, alpaca, text or tokens, got '", c.data.format, "'"));
  RETURN_IF_ERROR_LOCAL(p.Path(data, "data", "tokenizer", &c.data.tokenizer));
  RETURN_IF_ERROR_LOCAL(p.Get(data, "data", "chat_template", &c.data.chat_template, "a built-in template name"));
  if (!c.data.chat_template.empty() && !text::ChatTemplate::Builtin(c.data.chat_template).ok())
    return p.Error(
        data["chat_template"], "data.chat_template",
        absl::StrCat("'", c.data.chat_template, "' is not a built-in template (llama3, chatml, mistral, plain)"));
  RETURN_IF_ERROR_LOCAL(p.Get(data, "data", "train_on_inputs", &c.data.train_on_inputs, "true or false"));
  RETURN_IF_ERROR_LOCAL(p.Get(data, "data", "packing", &c.data.packing, "true or false"));
  RETURN_IF_ERROR_LOCAL(p.Get(data, "data", "max_seq_len", &c.data.max_seq_len, "an integer"));
  RETURN_IF_ERROR_LOCAL(p.Positive(data, "data", "max_seq_len", c.data.max_seq_len, 2));

  if (root["training"].IsDefined()) {
    const YAML::Node t = root["training"];
    RETURN_IF_ERROR_LOCAL(
        p.Keys(t, "training",
               {"max_steps", "epochs", "micro_batch_size", "grad_accum_steps", "lr", "lr_schedule", "warmup_steps",
                "weight_decay", "max_grad_norm", "adam_beta1", "adam_beta2", "adam_epsilon", "seed",
                "gradient_checkpointing", "eval_every", "checkpoint_every", "device", "num_threads"}));
    auto& tr = c.training;
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "max_steps", &tr.max_steps, "an integer"));
    RETURN_IF_ERROR_LOCAL(p.Positive(t, "training", "max_steps", tr.max_steps, 0));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "epochs", &tr.epochs, "an integer"));
    RETURN_IF_ERROR_LOCAL(p.Positive(t, "training", "epochs", tr.epochs, 1));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "micro_batch_size", &tr.micro_batch_size, "an integer"));
    RETURN_IF_ERROR_LOCAL(p.Positive(t, "training", "micro_batch_size", tr.micro_batch_size, 1));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "grad_accum_steps", &tr.grad_accum_steps, "an integer"));
    RETURN_IF_ERROR_LOCAL(p.Positive(t, "training", "grad_accum_steps", tr.grad_accum_steps, 1));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "lr", &tr.lr, "a number"));
    if (tr.lr <= 0) return p.Error(t["lr"], "training.lr", "must be positive");
    std::string sched = "cosine";
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "lr_schedule", &sched, "cosine, linear or constant"));
    if (sched == "cosine")
      tr.lr_schedule = LrSchedule::kCosine;
    else if (sched == "linear")
      tr.lr_schedule = LrSchedule::kLinear;
    else if (sched == "constant")
      tr.lr_schedule = LrSchedule::kConstant;
    else
      return p.Error(t["lr_schedule"], "training.lr_schedule",
                     absl::StrCat("must be cosine, linear or constant, got '", sched, "'"));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "warmup_steps", &tr.warmup_steps, "an integer"));
    RETURN_IF_ERROR_LOCAL(p.Positive(t, "training", "warmup_steps", tr.warmup_steps, 0));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "weight_decay", &tr.weight_decay, "a number"));
    if (tr.weight_decay < 0) return p.Error(t["weight_decay"], "training.weight_decay", "must not be negative");
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "max_grad_norm", &tr.max_grad_norm, "a number"));
    if (tr.max_grad_norm < 0)
      return p.Error(t["max_grad_norm"], "training.max_grad_norm", "must not be negative (0 disables clipping)");
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "adam_beta1", &tr.adam_beta1, "a number"));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "adam_beta2", &tr.adam_beta2, "a number"));
    if (tr.adam_beta1 < 0 || tr.adam_beta1 >= 1)
      return p.Error(t["adam_beta1"], "training.adam_beta1", "must be in [0, 1)");
    if (tr.adam_beta2 < 0 || tr.adam_beta2 >= 1)
      return p.Error(t["adam_beta2"], "training.adam_beta2", "must be in [0, 1)");
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "adam_epsilon", &tr.adam_epsilon, "a number"));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "seed", &tr.seed, "a non-negative integer"));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "gradient_checkpointing", &tr.gradient_checkpointing, "true or false"));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "eval_every", &tr.eval_every, "an integer"));
    RETURN_IF_ERROR_LOCAL(p.Positive(t, "training", "eval_every", tr.eval_every, 0));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "checkpoint_every", &tr.checkpoint_every, "an integer"));
    RETURN_IF_ERROR_LOCAL(p.Positive(t, "training", "checkpoint_every", tr.checkpoint_every, 0));
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "device", &tr.device, "auto, cpu, cuda or cuda:N"));
    if (tr.device != "auto" && tr.device != "cpu" && tr.device.rfind("cuda", 0) != 0)
      return p.Error(t["device"], "training.device", "must be auto, cpu, cuda or cuda:N");
    RETURN_IF_ERROR_LOCAL(p.Get(t, "training", "num_threads", &tr.num_threads, "an integer"));
    RETURN_IF_ERROR_LOCAL(p.Positive(t, "training", "num_threads", tr.num_threads, 0));
  }
  RETURN_IF_ERROR_LOCAL(p.Path(root, "", "output_dir", &c.output_dir));
  if (c.output_dir.empty()) return p.Error(root, "output_dir", "is required");
  return c;
}

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  fs::path base = fs::absolute(path).parent_path();
  return ParseTrainConfig(*text, path, base.string());
}

}  // namespace polytune::engine
