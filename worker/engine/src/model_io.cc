#include "polytune/engine/model_io.h"

// at::NoGradGuard: libtorch 2.x no longer declares it through <ATen/ATen.h>.
#include <ATen/core/grad_mode.h>

#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/str_cat.h"
#include "polytune/common/file_util.h"
#include "polytune/common/status_macros.h"
#include "polytune/engine/adapter_io.h"
#include "polytune/engine/model_loader.h"
#include "polytune/engine/safetensors.h"

namespace polytune::engine {
namespace fs = std::filesystem;

absl::Status WriteRandomModel(const std::string& dir, const ModelConfig& config, uint64_t seed,
                              const std::string& dtype) {
  at::ScalarType st;
  if (dtype == "float32")
    st = at::kFloat;
  else if (dtype == "float16")
    st = at::kHalf;
  else if (dtype == "bfloat16")
    st = at::kBFloat16;
  else
    return absl::InvalidArgumentError(absl::StrCat("dtype '", dtype, "' must be float32, float16 or bfloat16"));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create '", dir, "': ", ec.message()));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto normal = [&](std::vector<int64_t> shape) { return at::empty(shape, at::kFloat).normal_(0.0, 0.02, gen).to(st); };
  const int64_t h = config.hidden_size;
  const int64_t q = config.num_attention_heads * config.head_dim;
  const int64_t kv = config.num_key_value_heads * config.head_dim;
  const int64_t inter = config.intermediate_size;
  std::map<std::string, at::Tensor> t;
  t["model.embed_tokens.weight"] = normal({config.vocab_size, h});
  t["model.norm.weight"] = at::ones({h}, st);
  if (!config.tie_word_embeddings) t["lm_head.weight"] = normal({config.vocab_size, h});
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    t[p + "input_layernorm.weight"] = at::ones({h}, st);
    t[p + "post_attention_layernorm.weight"] = at::ones({h}, st);
    t[p + "self_attn.q_proj.weight"] = normal({q, h});
    t[p + "self_attn.k_proj.weight"] = normal({kv, h});
    t[p + "self_attn.v_proj.weight"] = normal({kv, h});
    t[p + "self_attn.o_proj.weight"] = normal({h, q});
    t[p + "mlp.gate_proj.weight"] = normal({inter, h});
    t[p + "mlp.up_proj.weight"] = normal({inter, h});
    t[p + "mlp.down_proj.weight"] = normal({h, inter});
    if (config.qkv_bias) {
      t[p + "self_attn.q_proj.bias"] = normal({q});
      t[p + "self_attn.k_proj.bias"] = normal({kv});
      t[p + "self_attn.v_proj.bias"] = normal({kv});
    }
    if (config.o_proj_bias) t[p + "self_attn.o_proj.bias"] = normal({h});
    if (config.mlp_bias) {
      t[p + "mlp.gate_proj.bias"] = normal({inter});
      t[p + "mlp.up_proj.bias"] = normal({inter});
      t[p + "mlp.down_proj.bias"] = normal({h});
    }
  }
  ModelConfig c = config;
  c.torch_dtype = dtype;
  RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", t, {{"format", "pt"}}));
  return WriteFileAtomic(dir + "/config.json", ModelConfigToJson(c).dump(2) + "\n");
}

absl::Status ExportMergedModel(const std::string& model_dir, const std::string& adapter_dir,
                               const std::string& out_dir) {
  LoadOptions opts;
  opts.quantization = Quantization::kNone;
  opts.device = at::kCPU;
  opts.compute_dtype = at::kFloat;
  ASSIGN_OR_RETURN(auto model, LoadModel(model_dir, opts));
  ASSIGN_OR_RETURN(PeftAdapter adapter, LoadPeftAdapter(adapter_dir));
  RETURN_IF_ERROR(ApplyPeftAdapter(adapter, model.get()));
  at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> t;
  t["model.embed_tokens.weight"] = model->embed_tokens;
  t["model.norm.weight"] = model->final_norm;
  if (model->lm_head.defined()) t["lm_head.weight"] = model->lm_head;
  for (size_t l = 0; l < model->layers.size(); ++l) {
    const DecoderLayer& layer = model->layers[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    t[p + "input_layernorm.weight"] = layer.input_layernorm;
    t[p + "post_attention_layernorm.weight"] = layer.post_attention_layernorm;
    for (int k = 0; k < kNumProjKinds; ++k) {
      const auto kind = static_cast<ProjKind>(k);
      const Projection& proj = layer.proj[k];
      const std::string name = absl::StrCat(p, ProjParentName(kind), ".", ProjName(kind));
      at::Tensor w = proj.weight.Materialize(at::kFloat);
      if (proj.lora) w = w + at::matmul(proj.lora->b.detach(), proj.lora->a.detach()) * proj.lora->scaling;
      t[name + ".weight"] = w;
      if (proj.bias.defined()) t[name + ".bias"] = proj.bias;
    }
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create '", out_dir, "': ", ec.message()));
  ModelConfig c = model->config();
  c.torch_dtype = "float32";
  RETURN_IF_ERROR(WriteSafetensors(out_dir + "/model.safetensors", t, {{"format", "pt"}}));
  // Tokenizer files travel with the model so the export is usable on its own.
  for (const char* f :
       {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
    if (fs::exists(fs::path(model_dir) / f)) {
      ASSIGN_OR_RETURN(std::string text, ReadFileToString((fs::path(model_dir) / f).string()));
      RETURN_IF_ERROR(WriteFileAtomic((fs::path(out_dir) / f).string(), text));
    }
  }
  // config.json mirrors the source, only the dtype changes.
  ASSIGN_OR_RETURN(std::string cfg_text, ReadFileToString(model_dir + "/config.json"));
  auto cfg = nlohmann::json::parse(cfg_text, nullptr, false);
  if (cfg.is_discarded()) return absl::InvalidArgumentError(model_dir + "/config.json: invalid JSON");
  cfg["torch_dtype"] = "float32";
  return WriteFileAtomic(out_dir + "/config.json", cfg.dump(2) + "\n");
}

}  // namespace polytune::engine
