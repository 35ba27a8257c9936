// Writing Hugging Face model folders: random small Llama checkpoints for demos and tests,
// and full-precision exports with a LoRA adapter merged in.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "polytune/engine/model_config.h"

namespace polytune::engine {

// Writes config.json and model.safetensors for `config` with weights drawn from N(0, 0.02)
// (norms 1), deterministic in `seed`. `dtype` is float32, float16 or bfloat16.
absl::Status WriteRandomModel(const std::string& dir, const ModelConfig& config, uint64_t seed,
                              const std::string& dtype = "float32");

// Loads the base model unquantised (fp32), merges W += scaling * B @ A for every adapted
// projection, and writes an fp32 HF checkpoint (config.json, model.safetensors) to out_dir.
absl::Status ExportMergedModel(const std::string& model_dir, const std::string& adapter_dir,
                               const std::string& out_dir);

}  // namespace polytune::engine
