// Architecture hyper-parameters of a Hugging Face Llama-family checkpoint (config.json).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace polytune::engine {

enum class Architecture { kLlama, kMistral, kQwen2 };

struct RopeScaling {
  enum class Type { kLinear, kLlama3 };
  Type type = Type::kLlama3;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string architecture_name = "LlamaForCausalLM";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;     // attention_bias (Llama) or always (Qwen2)
  bool o_proj_bias = false;  // attention_bias (Llama only)
  bool mlp_bias = false;
  int64_t sliding_window = 0;  // 0: full causal attention
  std::string torch_dtype = "float32";
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
};

// Parses a config.json object; `source` names the file in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& j, const std::string& source);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// A config.json object equivalent to `config` (what `polytune model init` writes).
nlohmann::json ModelConfigToJson(const ModelConfig& config);

}  // namespace polytune::engine
