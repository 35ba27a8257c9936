#include "polytune/engine/model_config.h"

#include "absl/strings/str_cat.h"
#include "polytune/common/json_util.h"

namespace polytune::engine {
namespace {

absl::Status FieldError(const std::string& source, const std::string& key, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": field '", key, "' ", why));
}

absl::StatusOr<int64_t> GetInt(const nlohmann::json& j, const std::string& source, const std::string& key,
                               std::optional<int64_t> fallback) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback) return *fallback;
    return FieldError(source, key, "is required");
  }
  if (!j[key].is_number_integer()) return FieldError(source, key, "must be an integer");
  int64_t v = j[key].get<int64_t>();
  if (v < 0) return FieldError(source, key, "must not be negative");
  return v;
}

absl::StatusOr<double> GetDouble(const nlohmann::json& j, const std::string& source, const std::string& key,
                                 double fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) return FieldError(source, key, "must be a number");
  return j[key].get<double>();
}

absl::StatusOr<bool> GetBool(const nlohmann::json& j, const std::string& source, const std::string& key,
                             bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) return FieldError(source, key, "must be true or false");
  return j[key].get<bool>();
}

absl::StatusOr<std::optional<RopeScaling>> ParseRopeScaling(const nlohmann::json& r, const std::string& source,
                                                            const std::string& key) {
  if (r.is_null()) return std::optional<RopeScaling>();
  if (!r.is_object()) return FieldError(source, key, "must be an object");
  std::string type;
  if (r.contains("rope_type") && r["rope_type"].is_string())
    type = r["rope_type"].get<std::string>();
  else if (r.contains("type") && r["type"].is_string())
    type = r["type"].get<std::string>();
  if (type.empty() || type == "default") return std::optional<RopeScaling>();
  RopeScaling s;
  const std::string src = absl::StrCat(source, " (", key, ")");
  auto factor = GetDouble(r, src, "factor", 1.0);
  if (!factor.ok()) return factor.status();
  s.factor = *factor;
  if (type == "linear") {
    s.type = RopeScaling::Type::kLinear;
  } else if (type == "llama3") {
    s.type = RopeScaling::Type::kLlama3;
    auto low = GetDouble(r, src, "low_freq_factor", 1.0);
    auto high = GetDouble(r, src, "high_freq_factor", 4.0);
    auto orig = GetInt(r, src, "original_max_position_embeddings", 8192);
    if (!low.ok()) return low.status();
    if (!high.ok()) return high.status();
    if (!orig.ok()) return orig.status();
    s.low_freq_factor = *low;
    s.high_freq_factor = *high;
    s.original_max_position_embeddings = *orig;
    if (s.high_freq_factor <= s.low_freq_factor)
      return FieldError(source, key, "needs high_freq_factor > low_freq_factor");
  } else {
    return FieldError(source, key, absl::StrCat("has rope type '", type, "'; supported: default, linear, llama3"));
  }
  if (s.factor <= 0) return FieldError(source, key, "factor must be positive");
  return std::optional<RopeScaling>(s);
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  ModelConfig c;
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    arch = j["architectures"][0].get<std::string>();
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    const std::string mt = j["model_type"].get<std::string>();
    arch = mt == "llama"     ? "LlamaForCausalLM"
           : mt == "mistral" ? "MistralForCausalLM"
           : mt == "qwen2"   ? "Qwen2ForCausalLM"
                             : mt;
  } else {
    return FieldError(source, "architectures", "is missing (and no model_type)");
  }
  c.architecture_name = arch;
  if (arch == "LlamaForCausalLM")
    c.architecture = Architecture::kLlama;
  else if (arch == "MistralForCausalLM")
    c.architecture = Architecture::kMistral;
  else if (arch == "Qwen2ForCausalLM")
    c.architecture = Architecture::kQwen2;
  else
    return FieldError(source, "architectures",
                      absl::StrCat("names unsupported architecture '", arch,
                                   "'; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"));

#define POLYTUNE_ASSIGN(field, expr)  \
  {                                   \
    auto _v = (expr);                 \
    if (!_v.ok()) return _v.status(); \
    c.field = *_v;                    \
  }
  POLYTUNE_ASSIGN(vocab_size, GetInt(j, source, "vocab_size", std::nullopt));
  POLYTUNE_ASSIGN(hidden_size, GetInt(j, source, "hidden_size", std::nullopt));
  POLYTUNE_ASSIGN(intermediate_size, GetInt(j, source, "intermediate_size", std::nullopt));
  POLYTUNE_ASSIGN(num_hidden_layers, GetInt(j, source, "num_hidden_layers", std::nullopt));
  POLYTUNE_ASSIGN(num_attention_heads, GetInt(j, source, "num_attention_heads", std::nullopt));
  POLYTUNE_ASSIGN(num_key_value_heads, GetInt(j, source, "num_key_value_heads", c.num_attention_heads));
  if (c.num_attention_heads == 0) return FieldError(source, "num_attention_heads", "must be positive");
  POLYTUNE_ASSIGN(head_dim, GetInt(j, source, "head_dim", c.hidden_size / c.num_attention_heads));
  POLYTUNE_ASSIGN(max_position_embeddings, GetInt(j, source, "max_position_embeddings", 2048));
  POLYTUNE_ASSIGN(rms_norm_eps, GetDouble(j, source, "rms_norm_eps", 1e-6));
  POLYTUNE_ASSIGN(tie_word_embeddings, GetBool(j, source, "tie_word_embeddings", false));
  POLYTUNE_ASSIGN(mlp_bias, GetBool(j, source, "mlp_bias", false));
  bool attention_bias = false;
  {
    auto v = GetBool(j, source, "attention_bias", false);
    if (!v.ok()) return v.status();
    attention_bias = *v;
  }
  if (c.architecture == Architecture::kQwen2) {
    c.qkv_bias = true;  // hard-coded in Qwen2Attention
    c.o_proj_bias = false;
  } else {
    c.qkv_bias = attention_bias;
    c.o_proj_bias = attention_bias;
  }
  if (c.vocab_size == 0 || c.hidden_size == 0 || c.intermediate_size == 0 || c.num_hidden_layers == 0 ||
      c.num_key_value_heads == 0 || c.head_dim == 0)
    return absl::InvalidArgumentError(absl::StrCat(source,
                                                   ": vocab_size, hidden_size, intermediate_size, num_hidden_layers, "
                                                   "num_key_value_heads and head_dim must be positive"));
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return FieldError(source, "num_key_value_heads", "must divide num_attention_heads");
  if (c.head_dim % 2 != 0) return FieldError(source, "head_dim", "must be even for rotary embeddings");

  // Rotary parameters: transformers < 5 uses rope_theta + rope_scaling, v5 nests both in rope_parameters.
  POLYTUNE_ASSIGN(rope_theta, GetDouble(j, source, "rope_theta", 10000.0));
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    const auto& rp = j["rope_parameters"];
    POLYTUNE_ASSIGN(rope_theta, GetDouble(rp, absl::StrCat(source, " (rope_parameters)"), "rope_theta", c.rope_theta));
    POLYTUNE_ASSIGN(rope_scaling, ParseRopeScaling(rp, source, "rope_parameters"));
  } else if (j.contains("rope_scaling")) {
    POLYTUNE_ASSIGN(rope_scaling, ParseRopeScaling(j["rope_scaling"], source, "rope_scaling"));
  }
  if (c.architecture == Architecture::kMistral) {
    if (j.contains("sliding_window") && j["sliding_window"].is_null())
      c.sliding_window = 0;
    else
      POLYTUNE_ASSIGN(sliding_window, GetInt(j, source, "sliding_window", 4096));
  } else if (c.architecture == Architecture::kQwen2) {
    auto use = GetBool(j, source, "use_sliding_window", false);
    if (!use.ok()) return use.status();
    if (*use) POLYTUNE_ASSIGN(sliding_window, GetInt(j, source, "sliding_window", 4096));
  }
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) c.torch_dtype = j["torch_dtype"].get<std::string>();
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
    c.bos_token_id = j["bos_token_id"].get<int64_t>();
  if (j.contains("eos_token_id") && j["eos_token_id"].is_number_integer())
    c.eos_token_id = j["eos_token_id"].get<int64_t>();
#undef POLYTUNE_ASSIGN
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  auto j = ReadJsonFile(path);
  if (!j.ok()) return j.status();
  return ParseModelConfig(*j, path);
}

nlohmann::json ModelConfigToJson(const ModelConfig& c) {
  nlohmann::json j;
  j["architectures"] = {c.architecture_name};
  j["model_type"] = c.architecture == Architecture::kLlama     ? "llama"
                    : c.architecture == Architecture::kMistral ? "mistral"
                                                               : "qwen2";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = "silu";
  if (c.architecture == Architecture::kLlama) {
    j["attention_bias"] = c.qkv_bias;
    j["mlp_bias"] = c.mlp_bias;
  }
  if (c.rope_scaling) {
    const auto& s = *c.rope_scaling;
    if (s.type == RopeScaling::Type::kLinear) {
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", s.factor}};
    } else {
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", s.factor},
                           {"low_freq_factor", s.low_freq_factor},
                           {"high_freq_factor", s.high_freq_factor},
                           {"original_max_position_embeddings", s.original_max_position_embeddings}};
    }
  } else {
    j["rope_scaling"] = nullptr;
  }
  if (c.architecture == Architecture::kMistral)
    j["sliding_window"] = c.sliding_window == 0 ? nlohmann::json(nullptr) : nlohmann::json(c.sliding_window);
  j["torch_dtype"] = c.torch_dtype;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_id >= 0) j["eos_token_id"] = c.eos_token_id;
  return j;
}

}  // namespace polytune::engine
