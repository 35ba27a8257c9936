// PEFT LoRA adapter folders: adapter_config.json + adapter_model.safetensors.
#pragma once

#include <map>
#include <string>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "polytune/engine/llama_model.h"

namespace polytune::engine {

struct PeftAdapter {
  LoraSettings settings;
  std::string base_model_name_or_path;
  std::map<std::string, at::Tensor> tensors;  // PEFT names, fp32 CPU
};

// Writes `dir`/adapter_config.json and adapter_model.safetensors (each atomically) from the
// model's current LoRA weights. `dir` must exist.
absl::Status WritePeftAdapterFiles(const LlamaModel& model, const std::string& base_model_path, const std::string& dir);

// Writes an adapter folder atomically: built in a staging folder, fsynced, renamed to `dir`.
absl::Status SavePeftAdapter(const LlamaModel& model, const std::string& base_model_path, const std::string& dir);

absl::StatusOr<PeftAdapter> LoadPeftAdapter(const std::string& dir);

// Attaches adapters shaped by `adapter.settings` to `model` and copies the weights in,
// checking every name and shape; a missing or extra tensor is an error naming it.
absl::Status ApplyPeftAdapter(const PeftAdapter& adapter, LlamaModel* model);

}  // namespace polytune::engine
