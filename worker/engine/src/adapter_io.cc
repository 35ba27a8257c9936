#include "polytune/engine/adapter_io.h"

// at::NoGradGuard: libtorch 2.x no longer declares it through <ATen/ATen.h>.
#include <ATen/core/grad_mode.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "polytune/common/file_util.h"
#include "polytune/common/json_util.h"
#include "polytune/common/status_macros.h"
#include "polytune/engine/safetensors.h"

namespace polytune::engine {

absl::Status WritePeftAdapterFiles(const LlamaModel& model, const std::string& base_model_path,
                                   const std::string& dir) {
  if (!model.lora_settings()) return absl::FailedPreconditionError("model has no LoRA adapters to save");
  const LoraSettings& s = *model.lora_settings();
  nlohmann::json cfg;
  cfg["peft_type"] = "LORA";
  cfg["task_type"] = "CAUSAL_LM";
  cfg["base_model_name_or_path"] = base_model_path;
  cfg["r"] = s.r;
  cfg["lora_alpha"] = s.alpha;
  cfg["lora_dropout"] = s.dropout;
  cfg["target_modules"] = s.target_modules;
  cfg["use_rslora"] = s.rslora;
  cfg["layers_to_transform"] = s.layers.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.layers);
  cfg["layers_pattern"] = nullptr;
  cfg["bias"] = "none";
  cfg["fan_in_fan_out"] = false;
  cfg["use_dora"] = false;
  cfg["modules_to_save"] = nullptr;
  cfg["rank_pattern"] = nlohmann::json::object();
  cfg["alpha_pattern"] = nlohmann::json::object();
  cfg["init_lora_weights"] = true;
  cfg["inference_mode"] = true;
  cfg["revision"] = nullptr;
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/adapter_config.json", cfg.dump(2) + "\n"));
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, t] : model.LoraParameters()) tensors[name] = t.detach().to(at::kCPU).to(at::kFloat);
  return WriteSafetensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
}

absl::Status SavePeftAdapter(const LlamaModel& model, const std::string& base_model_path, const std::string& dir) {
  ASSIGN_OR_RETURN(std::string staging, MakeStagingDirectory(dir));
  RETURN_IF_ERROR(WritePeftAdapterFiles(model, base_model_path, staging));
  return CommitDirectory(staging, dir);
}

absl::StatusOr<PeftAdapter> LoadPeftAdapter(const std::string& dir) {
  const std::string cfg_path = dir + "/adapter_config.json";
  ASSIGN_OR_RETURN(nlohmann::json cfg, ReadJsonFile(cfg_path));
  auto field_error = [&](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(cfg_path, ": field '", key, "' ", why));
  };
  if (!cfg.is_object()) return absl::InvalidArgumentError(absl::StrCat(cfg_path, ": not a JSON object"));
  if (cfg.value("peft_type", "") != "LORA") return field_error("peft_type", "must be \"LORA\"");
  PeftAdapter a;
  if (!cfg.contains("r") || !cfg["r"].is_number_integer() || cfg["r"].get<int64_t>() < 1)
    return field_error("r", "must be a positive integer");
  a.settings.r = cfg["r"].get<int64_t>();
  if (!cfg.contains("lora_alpha") || !cfg["lora_alpha"].is_number())
    return field_error("lora_alpha", "must be a number");
  a.settings.alpha = cfg["lora_alpha"].get<double>();
  a.settings.dropout = cfg.value("lora_dropout", 0.0);
  a.settings.rslora = cfg.value("use_rslora", false);
  if (cfg.value("use_dora", false)) return field_error("use_dora", "is true; DoRA adapters are not supported");
  if (!cfg["rank_pattern"].is_null() && cfg.contains("rank_pattern") && !cfg["rank_pattern"].empty())
    return field_error("rank_pattern", "is not empty; per-module ranks are not supported");
  if (!cfg.contains("target_modules") || !cfg["target_modules"].is_array())
    return field_error("target_modules", "must be a list of module names");
  a.settings.target_modules.clear();
  for (const auto& m : cfg["target_modules"]) {
    ProjKind kind;
    if (!m.is_string() || !ParseProjName(m.get<std::string>(), &kind))
      return field_error("target_modules", absl::StrCat("has unsupported module ", m.dump()));
    a.settings.target_modules.push_back(m.get<std::string>());
  }
  if (cfg.contains("layers_to_transform") && !cfg["layers_to_transform"].is_null()) {
    const auto& l = cfg["layers_to_transform"];
    if (l.is_number_integer())
      a.settings.layers.push_back(l.get<int64_t>());
    else if (l.is_array())
      for (const auto& v : l) a.settings.layers.push_back(v.get<int64_t>());
    else
      return field_error("layers_to_transform", "must be an integer or a list");
  }
  a.base_model_name_or_path = cfg.value("base_model_name_or_path", "");
  ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(dir + "/adapter_model.safetensors"));
  for (const auto& [name, entry] : file->entries()) {
    ASSIGN_OR_RETURN(at::Tensor t, file->Load(name));
    a.tensors[name] = t.to(at::kFloat);
  }
  return a;
}

absl::Status ApplyPeftAdapter(const PeftAdapter& adapter, LlamaModel* model) {
  for (int64_t l : adapter.settings.layers)
    if (l >= static_cast<int64_t>(model->layers.size()))
      return absl::InvalidArgumentError(
          absl::StrCat("adapter targets layer ", l, " but the model has ", model->layers.size()));
  model->AttachLora(adapter.settings, /*seed=*/0);
  at::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& [name, param] : model->LoraParameters()) {
    // PEFT sometimes saves with the adapter name ("...lora_A.default.weight"); accept both.
    auto it = adapter.tensors.find(name);
    if (it == adapter.tensors.end()) {
      std::string alt = name;
      alt.replace(alt.rfind(".weight"), 7, ".default.weight");
      it = adapter.tensors.find(alt);
    }
    if (it == adapter.tensors.end())
      return absl::InvalidArgumentError(absl::StrCat("adapter_model.safetensors has no tensor '", name, "'"));
    if (it->second.sizes() != param.sizes())
      return absl::InvalidArgumentError(absl::StrCat("adapter tensor '", it->first, "' has shape [",
                                                     absl::StrJoin(it->second.sizes().vec(), ", "), "], expected [",
                                                     absl::StrJoin(param.sizes().vec(), ", "), "]"));
    param.copy_(it->second.to(param.device()));
    used.insert(it->first);
  }
  for (const auto& [name, t] : adapter.tensors)
    if (!used.count(name))
      return absl::InvalidArgumentError(absl::StrCat("adapter_model.safetensors has unexpected tensor '", name, "'"));
  return absl::OkStatus();
}

}  // namespace polytune::engine
