// Loads a Hugging Face model directory (config.json + model.safetensors, or shards listed in
// model.safetensors.index.json) into a LlamaModel, quantising the decoder projections.
#pragma once

#include <memory>
#include <string>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "polytune/engine/llama_model.h"
#include "polytune/spec/job_spec.h"

namespace polytune::engine {

using Quantization = spec::Quantization;

struct LoadOptions {
  Quantization quantization = Quantization::kNf4;
  bool double_quant = true;
  at::Device device = at::kCPU;
  // fp32 on CPU, bf16 on CUDA unless set.
  std::optional<at::ScalarType> compute_dtype;
};

// The default compute dtype for a device: fp32 on CPU, bf16 on CUDA.
at::ScalarType DefaultComputeDtype(const at::Device& device);

// training.compute_dtype: "auto" (nullopt: the device's default), "float32" or "bfloat16".
absl::StatusOr<std::optional<at::ScalarType>> ParseComputeDtype(const std::string& name);

absl::StatusOr<std::unique_ptr<LlamaModel>> LoadModel(const std::string& model_dir, const LoadOptions& options);

using spec::ParseQuantization;  // "none" / "nf4"

}  // namespace polytune::engine
