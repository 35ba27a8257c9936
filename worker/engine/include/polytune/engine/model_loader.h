// Loads a Hugging Face model directory (config.json + model.safetensors, or shards listed in
// model.safetensors.index.json) into a LlamaModel, quantising the decoder projections.
#pragma once

#include <memory>
#include <string>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "polytune/engine/llama_model.h"

namespace polytune::engine {

enum class Quantization { kNone, kNf4 };

struct LoadOptions {
  Quantization quantization = Quantization::kNf4;
  bool double_quant = true;
  at::Device device = at::kCPU;
  // fp32 on CPU, bf16 on CUDA unless set.
  std::optional<at::ScalarType> compute_dtype;
};

// The default compute dtype for a device: fp32 on CPU, bf16 on CUDA.
at::ScalarType DefaultComputeDtype(const at::Device& device);

absl::StatusOr<std::unique_ptr<LlamaModel>> LoadModel(const std::string& model_dir, const LoadOptions& options);

// Parses "none" / "nf4".
absl::StatusOr<Quantization> ParseQuantization(const std::string& name);

}  // namespace polytune::engine
