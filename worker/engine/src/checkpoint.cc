#include "polytune/engine/checkpoint.h"

// at::NoGradGuard: libtorch 2.x no longer declares it through <ATen/ATen.h>.
#include <ATen/core/grad_mode.h>

#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "polytune/common/file_util.h"
#include "polytune/common/json_util.h"
#include "polytune/common/status_macros.h"
#include "polytune/engine/adapter_io.h"
#include "polytune/engine/safetensors.h"

namespace polytune::engine {
namespace fs = std::filesystem;

nlohmann::json TrainerState::ToJson() const {
  nlohmann::json j = {{"step", step},
                      {"total_steps", total_steps},
                      {"global_batch_size", global_batch_size},
                      {"seed", seed},
                      {"data_position", data_position},
                      {"epoch", epoch},
                      {"last_lr", last_lr},
                      {"run", run},
                      {"format_version", 1}};
  if (!early_stopping.is_null()) j["early_stopping"] = early_stopping;
  return j;
}

absl::StatusOr<TrainerState> TrainerState::FromJson(const nlohmann::json& j, const std::string& source) {
  TrainerState s;
  try {
    s.step = j.at("step").get<int64_t>();
    s.total_steps = j.at("total_steps").get<int64_t>();
    s.global_batch_size = j.at("global_batch_size").get<int64_t>();
    s.seed = j.at("seed").get<uint64_t>();
    s.data_position = j.at("data_position").get<int64_t>();
    s.epoch = j.at("epoch").get<double>();
    s.last_lr = j.at("last_lr").get<double>();
    if (j.contains("run")) s.run = j.at("run").get<std::map<std::string, std::string>>();
    if (j.contains("early_stopping") && j.at("early_stopping").is_object()) s.early_stopping = j.at("early_stopping");
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": incomplete trainer state: ", e.what()));
  }
  return s;
}

std::string CheckpointDirName(int64_t step) { return absl::StrCat("step-", step); }

absl::Status SaveCheckpoint(const std::string& dir, const LlamaModel& model, const std::string& base_model_path,
                            AdamW& optimizer, const TrainerState& state,
                            const std::map<std::string, std::string>& extra_files) {
  ASSIGN_OR_RETURN(std::string staging, MakeStagingDirectory(dir));
  RETURN_IF_ERROR(WritePeftAdapterFiles(model, base_model_path, staging));
  std::map<std::string, at::Tensor> moments;
  size_t i = 0;
  for (const auto& [name, param] : model.LoraParameters()) {
    moments[name + ".exp_avg"] = optimizer.exp_avg()[i];
    moments[name + ".exp_avg_sq"] = optimizer.exp_avg_sq()[i];
    ++i;
  }
  RETURN_IF_ERROR(WriteSafetensors(staging + "/optimizer.safetensors", moments,
                                   {{"adamw_step", absl::StrCat(optimizer.step_count())}}));
  for (const auto& [name, contents] : extra_files) RETURN_IF_ERROR(WriteFileAtomic(staging + "/" + name, contents));
  // trainer_state.json goes last: a checkpoint without it is incomplete by construction.
  RETURN_IF_ERROR(WriteFileAtomic(staging + "/trainer_state.json", state.ToJson().dump(2) + "\n"));
  return CommitDirectory(staging, dir);
}

absl::StatusOr<TrainerState> LoadCheckpoint(const std::string& dir, LlamaModel* model, AdamW* optimizer) {
  ASSIGN_OR_RETURN(nlohmann::json sj, ReadJsonFile(dir + "/trainer_state.json"));
  ASSIGN_OR_RETURN(TrainerState state, TrainerState::FromJson(sj, dir + "/trainer_state.json"));
  ASSIGN_OR_RETURN(PeftAdapter adapter, LoadPeftAdapter(dir));
  at::NoGradGuard no_grad;
  auto params = model->LoraParameters();
  if (adapter.tensors.size() != params.size())
    return absl::InvalidArgumentError(absl::StrCat(dir, ": checkpoint has ", adapter.tensors.size(),
                                                   " adapter tensors but this configuration trains ", params.size(),
                                                   "; resume with the configuration that wrote it"));
  ASSIGN_OR_RETURN(auto opt_file, SafetensorsFile::Open(dir + "/optimizer.safetensors"));
  size_t i = 0;
  for (auto& [name, param] : params) {
    auto it = adapter.tensors.find(name);
    if (it == adapter.tensors.end() || it->second.sizes() != param.sizes())
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": adapter tensor '", name, "' is missing or has another shape"));
    param.copy_(it->second.to(param.device()));
    ASSIGN_OR_RETURN(at::Tensor m, opt_file->Load(name + ".exp_avg"));
    ASSIGN_OR_RETURN(at::Tensor v, opt_file->Load(name + ".exp_avg_sq"));
    if (m.sizes() != param.sizes() || v.sizes() != param.sizes())
      return absl::InvalidArgumentError(
          absl::StrCat(dir, "/optimizer.safetensors: moments of '", name, "' have the wrong shape"));
    optimizer->exp_avg()[i].copy_(m.to(param.device()));
    optimizer->exp_avg_sq()[i].copy_(v.to(param.device()));
    ++i;
  }
  int64_t adam_step = 0;
  auto meta = opt_file->metadata().find("adamw_step");
  if (meta == opt_file->metadata().end() || !absl::SimpleAtoi(meta->second, &adam_step))
    return absl::InvalidArgumentError(absl::StrCat(dir, "/optimizer.safetensors: missing adamw_step metadata"));
  optimizer->set_step_count(adam_step);
  return state;
}

std::optional<std::string> LatestCheckpoint(const std::string& output_dir) {
  const fs::path root = fs::path(output_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return std::nullopt;
  int64_t best = -1;
  std::string best_dir;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    int64_t step;
    if (name.rfind("step-", 0) != 0 || !absl::SimpleAtoi(name.substr(5), &step)) continue;  // skips .tmp-* staging
    if (!fs::exists(entry.path() / "trainer_state.json")) continue;
    if (step > best) {
      best = step;
      best_dir = entry.path().string();
    }
  }
  if (best < 0) return std::nullopt;
  return best_dir;
}

}  // namespace polytune::engine
