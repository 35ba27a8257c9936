// Llama-family decoder (Llama, Mistral, Qwen2) with frozen (optionally NF4) base weights and
// trainable LoRA adapters, following Hugging Face's modeling code: RMSNorm in fp32, RoPE in
// the rotate_half convention, grouped-query attention, SwiGLU MLP.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "polytune/engine/frozen_linear.h"
#include "polytune/engine/lora.h"
#include "polytune/engine/model_config.h"
#include "polytune/engine/rms_norm.h"  // RmsNorm, used by callers of the model

namespace polytune::engine {

struct Projection {
  FrozenWeight weight;
  at::Tensor bias;  // undefined when the module has none
  std::optional<LoraAdapter> lora;
};

struct DecoderLayer {
  at::Tensor input_layernorm;           // [hidden]
  at::Tensor post_attention_layernorm;  // [hidden]
  std::array<Projection, kNumProjKinds> proj;
  bool HasLora() const;
};

struct ForwardOptions {
  bool training = false;
  bool gradient_checkpointing = false;
  // With gradient_checkpointing: keep each layer's frozen projection products (all but
  // down_proj's) from forward, so the recompute in backward runs only attention and the
  // elementwise ops, not those GEMMs again. Same values and gradients, bit for bit; costs
  // rows x (q + 2 kv + hidden + 2 intermediate) values per layer until its backward.
  bool checkpoint_keeps_projections = false;
  // One DropoutTokenKey per token (batch x seq, row-major); needed when LoRA dropout applies.
  std::vector<int64_t> token_keys;
  // Packed rows: segment id per token [batch, seq]; attention stays within a segment
  // (block-diagonal causal). Undefined: plain causal attention.
  at::Tensor segment_ids;
};

// Keys and values of every layer for incremental decoding: a prompt is run once (prefill) and
// then one token per step, each step attending to the cached keys instead of recomputing them.
// Slots are preallocated up to `capacity`; a slot's position is -1 while empty or padding, and
// such slots are never attended to, so rows of different lengths share one batch (left padding).
struct KvCache {
  std::vector<at::Tensor> keys, values;  // per layer [batch, kv_heads, capacity, head_dim]
  at::Tensor positions;                  // int64 [batch, capacity]
  int64_t length = 0;                    // slots filled (the same for every row)

  int64_t batch() const { return positions.size(0); }
  int64_t capacity() const { return positions.size(1); }
  // Bytes the keys and values of one token of one row take, over all layers.
  int64_t BytesPerToken() const;
  // Keeps only `rows` (indices into the batch), in that order: finished rows leave the batch.
  void SelectRows(const std::vector<int64_t>& rows);
};

class LlamaModel {
 public:
  LlamaModel(ModelConfig config, at::Device device, at::ScalarType compute_dtype);

  const ModelConfig& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType compute_dtype() const { return compute_dtype_; }

  // Final normed hidden states [batch, seq, hidden] for input_ids [batch, seq] (int64).
  // position_ids default to 0..seq-1 for every row. Attention is causal (plus the sliding
  // window when the config has one, and segments when packed); right padding therefore never
  // affects real tokens.
  at::Tensor ForwardHidden(const at::Tensor& input_ids, const ForwardOptions& options,
                           const at::Tensor& position_ids = at::Tensor()) const;
  // fp32 logits [batch, seq, vocab].
  at::Tensor Logits(const at::Tensor& hidden) const;
  // The output projection [vocab, hidden]: lm_head, or embed_tokens when tied.
  const at::Tensor& head() const { return lm_head.defined() ? lm_head : embed_tokens; }
  at::Tensor Forward(const at::Tensor& input_ids, const ForwardOptions& options = {}) const {
    return Logits(ForwardHidden(input_ids, options));
  }

  // An empty cache for `batch` rows of at most `capacity` tokens (prompt plus generated).
  KvCache NewKvCache(int64_t batch, int64_t capacity) const;
  // Incremental forward without gradients: runs input_ids [batch, n] at position_ids [batch, n]
  // (-1 marks a padding slot, which no token attends to), appends their keys and values to
  // `cache` and returns the final normed hidden states [batch, n, hidden]. Attention is causal
  // by position (plus the sliding window), over the cached tokens and these. The result equals
  // ForwardHidden over the whole sequence at those positions, up to rounding.
  at::Tensor ForwardCached(const at::Tensor& input_ids, const at::Tensor& position_ids, KvCache* cache) const;

  // Adds LoRA adapters as `settings` asks; A is seeded from `seed` per layer and module.
  void AttachLora(const LoraSettings& settings, uint64_t seed);
  const std::optional<LoraSettings>& lora_settings() const { return lora_settings_; }
  // Trainable tensors keyed by PEFT name, e.g.
  // "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".
  std::map<std::string, at::Tensor> LoraParameters() const;

  // Parts, filled by the loader.
  at::Tensor embed_tokens;  // [vocab, hidden]
  at::Tensor final_norm;    // [hidden]
  at::Tensor lm_head;       // [vocab, hidden]; undefined when tied to embed_tokens
  std::vector<DecoderLayer> layers;

  // Bytes held by base weights (quantised or not), for reports.
  int64_t BaseWeightBytes() const;
  int64_t QuantizedParameterCount() const;
  int64_t QuantizedBytes() const;

 private:
  ModelConfig config_;
  at::Device device_;
  at::ScalarType compute_dtype_;
  at::Tensor inv_freq_;
  std::optional<LoraSettings> lora_settings_;
};

// PEFT tensor name of a LoRA matrix ("A" or "B").
std::string PeftLoraName(int64_t layer, ProjKind kind, char matrix);

}  // namespace polytune::engine
