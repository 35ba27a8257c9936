#include "polytune/engine/model_loader.h"

// at::NoGradGuard: libtorch 2.x no longer declares it through <ATen/ATen.h>.
#include <ATen/core/grad_mode.h>

#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "polytune/common/json_util.h"
#include "polytune/common/status_macros.h"
#include "polytune/engine/safetensors.h"

namespace polytune::engine {
namespace fs = std::filesystem;
namespace {

// Where every tensor of the checkpoint lives.
struct TensorIndex {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, const SafetensorsFile*> location;
};

absl::StatusOr<TensorIndex> OpenCheckpoint(const std::string& dir) {
  TensorIndex index;
  const std::string single = dir + "/model.safetensors";
  const std::string sharded = dir + "/model.safetensors.index.json";
  if (fs::exists(sharded)) {
    ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(sharded));
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      return absl::InvalidArgumentError(absl::StrCat(sharded, ": missing object 'weight_map'"));
    std::map<std::string, const SafetensorsFile*> by_file;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it->is_string())
        return absl::InvalidArgumentError(absl::StrCat(sharded, ": weight_map['", it.key(), "'] must be a file name"));
      const std::string file = it->get<std::string>();
      if (file.find('/') != std::string::npos)
        return absl::InvalidArgumentError(
            absl::StrCat(sharded, ": weight_map['", it.key(), "'] names a path outside the model directory"));
      if (!by_file.count(file)) {
        ASSIGN_OR_RETURN(auto opened, SafetensorsFile::Open(dir + "/" + file));
        by_file[file] = opened.get();
        index.files.push_back(std::move(opened));
      }
      const SafetensorsFile* f = by_file[file];
      if (!f->Contains(it.key()))
        return absl::InvalidArgumentError(
            absl::StrCat(f->path(), ": tensor '", it.key(), "' listed in ", sharded, " is missing"));
      index.location[it.key()] = f;
    }
    for (const auto& f : index.files)
      for (const auto& [name, entry] : f->entries())
        if (!index.location.count(name))
          return absl::InvalidArgumentError(
              absl::StrCat(f->path(), ": tensor '", name, "' is not listed in ", sharded));
  } else if (fs::exists(single)) {
    ASSIGN_OR_RETURN(auto opened, SafetensorsFile::Open(single));
    for (const auto& [name, entry] : opened->entries()) index.location[name] = opened.get();
    index.files.push_back(std::move(opened));
  } else {
    return absl::NotFoundError(absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json"));
  }
  return index;
}

class Loader {
 public:
  Loader(const TensorIndex& index, const ModelConfig& config, const LoadOptions& options, at::ScalarType dtype)
      : index_(index), config_(config), options_(options), dtype_(dtype) {}

  // Loads a tensor as fp32 on the target device after checking its shape.
  absl::StatusOr<at::Tensor> Take(const std::string& name, std::vector<int64_t> shape) {
    auto it = index_.location.find(name);
    if (it == index_.location.end())
      return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", name, "' (required by the config)"));
    const SafetensorsFile* f = it->second;
    const SafetensorsEntry& e = f->entries().at(name);
    if (e.dtype != "F32" && e.dtype != "F16" && e.dtype != "BF16")
      return absl::InvalidArgumentError(absl::StrCat(f->path(), ": tensor '", name, "' has dtype ", e.dtype,
                                                     "; model weights must be F32, F16 or BF16"));
    if (e.shape != shape)
      return absl::InvalidArgumentError(absl::StrCat(f->path(), ": tensor '", name, "' has shape [",
                                                     absl::StrJoin(e.shape, ", "), "] but config.json implies [",
                                                     absl::StrJoin(shape, ", "), "]"));
    ASSIGN_OR_RETURN(at::Tensor t, f->Load(name));
    used_.insert(name);
    return t.to(options_.device).to(at::kFloat);
  }

  absl::StatusOr<at::Tensor> Dense(const std::string& name, std::vector<int64_t> shape) {
    ASSIGN_OR_RETURN(at::Tensor t, Take(name, std::move(shape)));
    return t.to(dtype_);
  }

  absl::Status Unused() const {
    for (const auto& [name, file] : index_.location) {
      if (used_.count(name)) continue;
      if (absl::EndsWith(name, "rotary_emb.inv_freq")) continue;              // buffer saved by old transformers
      if (name == "lm_head.weight" && config_.tie_word_embeddings) continue;  // tied: ignored like HF does
      return absl::InvalidArgumentError(absl::StrCat(file->path(), ": unexpected tensor '", name, "' for ",
                                                     config_.architecture_name, " with this config.json"));
    }
    return absl::OkStatus();
  }

 private:
  const TensorIndex& index_;
  const ModelConfig& config_;
  const LoadOptions& options_;
  at::ScalarType dtype_;
  std::set<std::string> used_;
};

}  // namespace

at::ScalarType DefaultComputeDtype(const at::Device& device) { return device.is_cuda() ? at::kBFloat16 : at::kFloat; }

absl::StatusOr<std::optional<at::ScalarType>> ParseComputeDtype(const std::string& name) {
  if (name == "auto") return std::optional<at::ScalarType>();
  if (name == "float32") return std::optional<at::ScalarType>(at::kFloat);
  if (name == "bfloat16") return std::optional<at::ScalarType>(at::kBFloat16);
  return absl::InvalidArgumentError(
      absl::StrCat("training.compute_dtype is '", name, "': use auto, float32 or bfloat16"));
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LoadModel(const std::string& model_dir, const LoadOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  ASSIGN_OR_RETURN(TensorIndex index, OpenCheckpoint(model_dir));
  const at::ScalarType dtype = options.compute_dtype.value_or(DefaultComputeDtype(options.device));
  auto model = std::make_unique<LlamaModel>(config, options.device, dtype);
  Loader loader(index, config, options, dtype);
  at::NoGradGuard no_grad;
  const int64_t h = config.hidden_size, v = config.vocab_size;
  const int64_t q_out = config.num_attention_heads * config.head_dim;
  const int64_t kv_out = config.num_key_value_heads * config.head_dim;
  const int64_t inter = config.intermediate_size;
  ASSIGN_OR_RETURN(model->embed_tokens, loader.Dense("model.embed_tokens.weight", {v, h}));
  ASSIGN_OR_RETURN(model->final_norm, loader.Dense("model.norm.weight", {h}));
  if (!config.tie_word_embeddings) {
    ASSIGN_OR_RETURN(model->lm_head, loader.Dense("lm_head.weight", {v, h}));
  }

  const std::array<std::pair<int64_t, int64_t>, kNumProjKinds> shapes = {
      {{q_out, h}, {kv_out, h}, {kv_out, h}, {h, q_out}, {inter, h}, {inter, h}, {h, inter}}};
  model->layers.resize(config.num_hidden_layers);
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    DecoderLayer& layer = model->layers[l];
    const std::string prefix = absl::StrCat("model.layers.", l, ".");
    ASSIGN_OR_RETURN(layer.input_layernorm, loader.Dense(prefix + "input_layernorm.weight", {h}));
    ASSIGN_OR_RETURN(layer.post_attention_layernorm, loader.Dense(prefix + "post_attention_layernorm.weight", {h}));
    for (int k = 0; k < kNumProjKinds; ++k) {
      const auto kind = static_cast<ProjKind>(k);
      const std::string name = absl::StrCat(prefix, ProjParentName(kind), ".", ProjName(kind));
      const auto [out, in] = shapes[k];
      ASSIGN_OR_RETURN(at::Tensor w, loader.Take(name + ".weight", {out, in}));
      Projection& p = layer.proj[k];
      p.weight = options.quantization == Quantization::kNf4
                     ? FrozenWeight::Quantized(QuantizeNf4(w, options.double_quant))
                     : FrozenWeight::Dense(w.to(dtype));
      const bool has_bias = kind <= ProjKind::kV   ? config.qkv_bias
                            : kind == ProjKind::kO ? config.o_proj_bias
                                                   : config.mlp_bias;
      if (has_bias) {
        ASSIGN_OR_RETURN(p.bias, loader.Dense(name + ".bias", {out}));
      }
    }
  }
  RETURN_IF_ERROR(loader.Unused());
  return model;
}

}  // namespace polytune::engine
