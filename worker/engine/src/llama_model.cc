#include "polytune/engine/llama_model.h"

// at::NoGradGuard: libtorch 2.x no longer declares it through <ATen/ATen.h>.
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <limits>
#include <map>
#include <tuple>

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include "absl/strings/str_cat.h"
#include "polytune/engine/attention_softmax.h"
#include "polytune/engine/blocked_attention.h"
#include "polytune/engine/rope.h"
#include "polytune/engine/swiglu.h"

namespace polytune::engine {
namespace {

// Everything a decoder layer needs besides its weights and input.
struct LayerRun {
  const ModelConfig* config;
  const DecoderLayer* layer;
  int64_t layer_index;
  at::Tensor cos, sin;  // [batch, seq, head_dim], fp32
  const ForwardOptions* options;
  // Packed rows: (row, start, end) triples covering every row; attention runs per span.
  std::vector<int64_t> spans;
  // Incremental decoding: new keys/values go to the cache, attention uses `cache_mask`
  // (additive, [batch, 1, n, cached + n]).
  KvCache* cache = nullptr;
  at::Tensor cache_mask;
  // Activation checkpointing's recompute: the layer's output is only differentiated, never
  // read, so the last projection (down_proj, whose backward needs no output values) records
  // its graph without computing its product.
  bool output_only_differentiated = false;
  // Checkpointing that keeps the projections' products (ForwardOptions::
  // checkpoint_keeps_projections): the forward pass records them here by kind, and the
  // recompute takes them back instead of running those GEMMs again.
  struct ProjectionProducts* products = nullptr;
};

// Frozen products of one layer's projections, before LoRA, by ProjKind. down_proj's is never
// kept: the recompute does not need its values (output_only_differentiated).
struct ProjectionProducts {
  std::array<at::Tensor, kNumProjKinds> by_kind;
  bool replay = false;  // false: forward, recording; true: the recompute, taking them back
};

// On rows [tokens, features]: the base output is then a fresh 2-D tensor (not a view), which
// LoRA's AddTo accumulates into in place.
at::Tensor RunProjection(const LayerRun& run, ProjKind kind, const at::Tensor& x, bool values_read = true) {
  const Projection& p = run.layer->proj[static_cast<int>(kind)];
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = p.weight.out_features();
  const at::Tensor rows = x.reshape({-1, x.size(-1)});
  ProjectionProducts* kept = run.products;
  at::Tensor* slot = kept != nullptr ? &kept->by_kind[static_cast<int>(kind)] : nullptr;
  at::Tensor y;
  if (slot != nullptr && kept->replay && slot->defined()) {
    y = FrozenLinearWithProduct(rows, p.weight, std::move(*slot));  // the same values, no GEMM
    *slot = at::Tensor();
  } else {
    y = values_read ? FrozenLinear(rows, p.weight, p.bias) : FrozenLinearGraphOnly(rows, p.weight, p.bias);
    // LoRA below adds into y in place, so what is kept is a copy (a pass over the output,
    // against the GEMM it saves in the recompute).
    if (slot != nullptr && !kept->replay && kind != ProjKind::kDown) *slot = y.clone();
  }
  if (p.lora) {
    DropoutKey key{run.layer_index, static_cast<int>(kind), &run.options->token_keys};
    y = p.lora->AddTo(y, rows, run.options->training, key);
  }
  return y.view(out_shape);
}

// Additive causal mask (0 on and below the diagonal, -inf above; also -inf beyond the
// sliding window), cached per thread since every layer of a forward pass uses the same one.
const at::Tensor& CausalMask(int64_t seq, int64_t window, at::ScalarType dtype, const at::Device& device) {
  // Keyed by everything the mask depends on; packed rows use one mask per example length.
  thread_local std::map<std::tuple<int64_t, int64_t, int, std::string>, at::Tensor> cache;
  auto key = std::make_tuple(seq, window, static_cast<int>(dtype), device.str());
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() > 256) cache.clear();
  auto bool_opts = at::TensorOptions().dtype(at::kBool).device(device);
  at::Tensor masked = at::ones({seq, seq}, bool_opts).triu(1);
  if (window > 0 && seq > window) masked = masked.logical_or(at::ones({seq, seq}, bool_opts).tril(-window));
  return cache[key] = at::zeros({seq, seq}, at::TensorOptions().dtype(dtype).device(device))
                          .masked_fill(masked, -std::numeric_limits<float>::infinity());
}

at::Tensor PackedAttention(const LayerRun& run, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// Attention of n new queries over the cache (which already holds their own keys).
at::Tensor CachedAttention(const LayerRun& run, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const int64_t groups = run.config->num_attention_heads / run.config->num_key_value_heads;
  at::Tensor kk = groups == 1 ? k : k.repeat_interleave(groups, 1);
  at::Tensor vv = groups == 1 ? v : v.repeat_interleave(groups, 1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(run.config->head_dim));
  at::Tensor scores = at::matmul(q, kk.transpose(-1, -2)).mul_(scale).add_(run.cache_mask);
  at::Tensor probs = AttentionSoftmax(scores);
  return at::matmul(probs, vv);
}

at::Tensor Attention(const LayerRun& run, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const ModelConfig& c = *run.config;
  const int64_t groups = c.num_attention_heads / c.num_key_value_heads;
  at::Tensor kk = groups == 1 ? k : k.repeat_interleave(groups, 1);
  at::Tensor vv = groups == 1 ? v : v.repeat_interleave(groups, 1);
  const int64_t batch = q.size(0), heads = q.size(1), seq = q.size(2), dim = q.size(3);
  const bool windowed = c.sliding_window > 0 && seq > c.sliding_window;
  if (!run.spans.empty()) return PackedAttention(run, q, k, v);
#if TORCH_VERSION_MAJOR >= 2
  if (q.is_cuda() && !windowed) return at::scaled_dot_product_attention(q, kk, vv, {}, 0.0, /*is_causal=*/true);
#endif
  // scores = mask + scale * q @ k^T in one batched GEMM (no separate scale or mask passes).
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  const at::Tensor& full_mask = CausalMask(seq, windowed ? c.sliding_window : 0, q.scalar_type(), q.device());
  if (!q.is_cuda() && !windowed && seq >= 2 * kAttentionBlock)
    return BlockedCausalAttention(q, kk, vv, full_mask, scale).view({batch, heads, seq, dim});
  at::Tensor mask = full_mask.unsqueeze(0).expand({batch * heads, seq, seq});
  at::Tensor scores = at::baddbmm(mask, q.reshape({batch * heads, seq, dim}),
                                  kk.reshape({batch * heads, seq, dim}).transpose(1, 2), /*beta=*/1.0, /*alpha=*/scale);
  at::Tensor probs = AttentionSoftmax(scores);
  return at::bmm(probs, vv.reshape({batch * heads, seq, dim})).view({batch, heads, seq, dim});
}

// Packed rows: causal attention within each example's span only, so no example attends to
// another. Spans are grouped by length (power-of-two buckets) and each group becomes one padded
// batch [spans, heads, longest, dim]: one gather per tensor and group, one batched attention,
// and one scatter back, instead of many small per-span ops whose slice backward copies whole
// tensors. Padding sits after each span's end, where causal attention never looks, and the cost
// stays under 4x the sum of len^2 (never seq^2).
at::Tensor PackedAttention(const LayerRun& run, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const int64_t batch = q.size(0), heads = q.size(1), seq = q.size(2), dim = q.size(3);
  std::map<int64_t, std::vector<size_t>> buckets;  // bucket length -> span indices
  for (size_t i = 0; i + 2 < run.spans.size(); i += 3) {
    int64_t bucket = 1;
    while (bucket < run.spans[i + 2] - run.spans[i + 1]) bucket *= 2;
    buckets[bucket].push_back(i);
  }
  LayerRun single = run;
  single.spans.clear();
  auto long_opts = at::TensorOptions().dtype(at::kLong);
  auto flat = [&](const at::Tensor& x) { return x.transpose(1, 2).reshape({batch * seq, x.size(1), dim}); };
  const at::Tensor qf = flat(q), kf = flat(k), vf = flat(v);
  std::vector<at::Tensor> outputs;
  std::vector<int64_t> scatter(static_cast<size_t>(batch * seq), 0);
  int64_t slot_base = 0;
  for (const auto& [bucket, members] : buckets) {
    int64_t longest = 0;
    for (size_t i : members) longest = std::max(longest, run.spans[i + 2] - run.spans[i + 1]);
    const int64_t n = static_cast<int64_t>(members.size());
    std::vector<int64_t> gather(static_cast<size_t>(n * longest));
    for (int64_t s = 0; s < n; ++s) {
      const size_t i = members[s];
      const int64_t base = run.spans[i] * seq + run.spans[i + 1], len = run.spans[i + 2] - run.spans[i + 1];
      for (int64_t t = 0; t < longest; ++t) gather[s * longest + t] = base + std::min(t, len - 1);
      for (int64_t t = 0; t < len; ++t) scatter[base + t] = slot_base + s * longest + t;
    }
    at::Tensor idx = at::tensor(gather, long_opts).to(q.device());
    auto to_spans = [&](const at::Tensor& x) {
      return x.index_select(0, idx).view({n, longest, x.size(1), dim}).transpose(1, 2);
    };
    at::Tensor o = Attention(single, to_spans(qf), to_spans(kf), to_spans(vf));  // [n, heads, longest, dim]
    outputs.push_back(o.transpose(1, 2).reshape({n * longest, heads, dim}));
    slot_base += n * longest;
  }
  at::Tensor all = outputs.size() == 1 ? outputs[0] : at::cat(outputs, 0);
  return all.index_select(0, at::tensor(scatter, long_opts).to(q.device()))
      .view({batch, seq, heads, dim})
      .transpose(1, 2);
}

at::Tensor DecoderForward(const LayerRun& run, const at::Tensor& x) {
  const ModelConfig& c = *run.config;
  const int64_t batch = x.size(0), seq = x.size(1);
  at::Tensor h = RmsNorm(x, run.layer->input_layernorm, c.rms_norm_eps);
  at::Tensor q =
      RunProjection(run, ProjKind::kQ, h).view({batch, seq, c.num_attention_heads, c.head_dim}).transpose(1, 2);
  at::Tensor k =
      RunProjection(run, ProjKind::kK, h).view({batch, seq, c.num_key_value_heads, c.head_dim}).transpose(1, 2);
  at::Tensor v =
      RunProjection(run, ProjKind::kV, h).view({batch, seq, c.num_key_value_heads, c.head_dim}).transpose(1, 2);
  q = ApplyRope(q, run.cos, run.sin);
  k = ApplyRope(k, run.cos, run.sin);
  at::Tensor attended;
  if (run.cache != nullptr) {
    KvCache& cache = *run.cache;
    const int64_t total = cache.length + seq;
    cache.keys[run.layer_index].narrow(2, cache.length, seq).copy_(k);
    cache.values[run.layer_index].narrow(2, cache.length, seq).copy_(v);
    attended = CachedAttention(run, q, cache.keys[run.layer_index].narrow(2, 0, total),
                               cache.values[run.layer_index].narrow(2, 0, total));
  } else {
    attended = Attention(run, q, k, v);
  }
  at::Tensor attn = attended.transpose(1, 2).reshape({batch, seq, c.num_attention_heads * c.head_dim});
  at::Tensor out = x + RunProjection(run, ProjKind::kO, attn);
  at::Tensor h2 = RmsNorm(out, run.layer->post_attention_layernorm, c.rms_norm_eps);
  at::Tensor mlp = RunProjection(run, ProjKind::kDown,
                                 SwiGlu(RunProjection(run, ProjKind::kGate, h2), RunProjection(run, ProjKind::kUp, h2)),
                                 /*values_read=*/!run.output_only_differentiated);
  return out + mlp;
}

std::vector<at::Tensor> LayerLoraTensors(const DecoderLayer& layer) {
  std::vector<at::Tensor> params;
  for (const auto& p : layer.proj) {
    if (p.lora) {
      params.push_back(p.lora->a);
      params.push_back(p.lora->b);
    }
  }
  return params;
}

// Activation checkpointing: forward keeps only the layer input; backward recomputes the
// layer with grad enabled (same dropout masks: they are a function of the key) and
// back-propagates through the recomputed graph.
class CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, at::TensorList params,
                            const LayerRun* run) {
    ctx->save_for_backward({x, run->cos, run->sin});
    if (run->options->checkpoint_keeps_projections) {
      ProjectionProducts products;
      LayerRun recording = *run;
      recording.products = &products;
      at::Tensor out = DecoderForward(recording, x);
      // Kept outside the saved variables: they are fresh copies nothing modifies.
      std::vector<at::Tensor> kept;
      std::vector<int64_t> kinds;
      for (int i = 0; i < kNumProjKinds; ++i) {
        if (!products.by_kind[i].defined()) continue;
        kept.push_back(std::move(products.by_kind[i]));
        kinds.push_back(i);
      }
      ctx->saved_data["kept_products"] = kept;
      ctx->saved_data["kept_kinds"] = kinds;
      SaveRun(ctx, *run, params.size());
      return out;
    }
    SaveRun(ctx, *run, params.size());
    return DecoderForward(*run, x);
  }

  static void SaveRun(torch::autograd::AutogradContext* ctx, const LayerRun& run, size_t num_params) {
    ctx->saved_data["spans"] = run.spans;
    ctx->saved_data["config"] = reinterpret_cast<int64_t>(run.config);
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(run.layer);
    ctx->saved_data["layer_index"] = run.layer_index;
    ctx->saved_data["training"] = run.options->training;
    ctx->saved_data["token_keys"] = run.options->token_keys;
    ctx->saved_data["num_params"] = static_cast<int64_t>(num_params);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    ForwardOptions options;
    options.training = ctx->saved_data["training"].toBool();
    options.token_keys = ctx->saved_data["token_keys"].toIntVector();
    LayerRun run{reinterpret_cast<const ModelConfig*>(ctx->saved_data["config"].toInt()),
                 reinterpret_cast<const DecoderLayer*>(ctx->saved_data["layer"].toInt()),
                 ctx->saved_data["layer_index"].toInt(),
                 saved[1],
                 saved[2],
                 &options,
                 ctx->saved_data["spans"].toIntVector()};
    run.output_only_differentiated = true;  // `out` below only roots autograd::grad
    ProjectionProducts products;
    if (ctx->saved_data.count("kept_products")) {
      // Moved out of the context, so each is freed as soon as the recompute has used it.
      std::vector<at::Tensor> kept = ctx->saved_data["kept_products"].toTensorVector();
      std::vector<int64_t> kinds = ctx->saved_data["kept_kinds"].toIntVector();
      ctx->saved_data.erase("kept_products");
      for (size_t i = 0; i < kept.size(); ++i) products.by_kind[kinds[i]] = std::move(kept[i]);
      products.replay = true;
      run.products = &products;
    }
    std::vector<at::Tensor> params = LayerLoraTensors(*run.layer);
    at::Tensor x = saved[0].detach().requires_grad_(saved[0].requires_grad());
    at::Tensor out;
    {
      at::AutoGradMode enable(true);
      out = DecoderForward(run, x);
    }
    std::vector<at::Tensor> inputs;
    if (x.requires_grad()) inputs.push_back(x);
    for (const auto& p : params) inputs.push_back(p);
    std::vector<at::Tensor> grads = torch::autograd::grad({out}, inputs, {grad_outputs[0]}, /*retain_graph=*/false,
                                                          /*create_graph=*/false, /*allow_unused=*/true);
    torch::autograd::variable_list result;
    size_t g = 0;
    result.push_back(x.requires_grad() ? grads[g++] : at::Tensor());
    for (size_t i = 0; i < params.size(); ++i) result.push_back(grads[g++]);
    result.push_back(at::Tensor());  // run pointer
    return result;
  }
};

}  // namespace

bool DecoderLayer::HasLora() const {
  for (const auto& p : proj)
    if (p.lora) return true;
  return false;
}

std::string PeftLoraName(int64_t layer, ProjKind kind, char matrix) {
  return absl::StrCat("base_model.model.model.layers.", layer, ".", ProjParentName(kind), ".", ProjName(kind), ".lora_",
                      std::string(1, matrix), ".weight");
}

LlamaModel::LlamaModel(ModelConfig config, at::Device device, at::ScalarType compute_dtype)
    : config_(std::move(config)), device_(device), compute_dtype_(compute_dtype) {
  inv_freq_ = RopeInverseFrequencies(config_).to(device_);
}

at::Tensor LlamaModel::ForwardHidden(const at::Tensor& input_ids, const ForwardOptions& options,
                                     const at::Tensor& position_ids) const {
  const int64_t batch = input_ids.size(0), seq = input_ids.size(1);
  at::Tensor ids = input_ids.to(device_);
  at::Tensor positions =
      position_ids.defined()
          ? position_ids.to(device_)
          : at::arange(seq, at::TensorOptions().dtype(at::kLong).device(device_)).unsqueeze(0).expand({batch, seq});
  auto [cos, sin] = RopeCosSin(inv_freq_, positions);
  // Packed rows: runs of equal segment id become (row, start, end) spans.
  std::vector<int64_t> spans;
  if (options.segment_ids.defined()) {
    at::Tensor seg = options.segment_ids.to(at::kCPU).contiguous();
    auto acc = seg.accessor<int64_t, 2>();
    for (int64_t r = 0; r < batch; ++r) {
      int64_t start = 0;
      for (int64_t t = 1; t <= seq; ++t) {
        if (t == seq || acc[r][t] != acc[r][start]) {
          spans.insert(spans.end(), {r, start, t});
          start = t;
        }
      }
    }
  }
  at::Tensor x = at::embedding(embed_tokens, ids).to(compute_dtype_);
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerRun run{&config_, &layers[i], static_cast<int64_t>(i), cos, sin, &options, spans};
    const bool needs_graph = at::GradMode::is_enabled() && (x.requires_grad() || layers[i].HasLora());
    if (!needs_graph) {
      at::NoGradGuard no_grad;
      x = DecoderForward(run, x);
    } else if (options.gradient_checkpointing) {
      std::vector<at::Tensor> params = LayerLoraTensors(layers[i]);
      x = CheckpointedLayer::apply(x, at::TensorList(params), &run);
    } else {
      x = DecoderForward(run, x);
    }
  }
  return RmsNorm(x, final_norm, config_.rms_norm_eps);
}

int64_t KvCache::BytesPerToken() const {
  int64_t bytes = 0;
  for (size_t l = 0; l < keys.size(); ++l)
    bytes += (keys[l].size(1) * keys[l].size(3) * keys[l].element_size() +
              values[l].size(1) * values[l].size(3) * values[l].element_size());
  return bytes;
}

void KvCache::SelectRows(const std::vector<int64_t>& rows) {
  at::Tensor idx = at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(positions.device());
  for (auto& k : keys) k = k.index_select(0, idx);
  for (auto& v : values) v = v.index_select(0, idx);
  positions = positions.index_select(0, idx);
}

KvCache LlamaModel::NewKvCache(int64_t batch, int64_t capacity) const {
  KvCache cache;
  auto opts = at::TensorOptions().dtype(compute_dtype_).device(device_);
  for (size_t l = 0; l < layers.size(); ++l) {
    cache.keys.push_back(at::zeros({batch, config_.num_key_value_heads, capacity, config_.head_dim}, opts));
    cache.values.push_back(at::zeros({batch, config_.num_key_value_heads, capacity, config_.head_dim}, opts));
  }
  cache.positions = at::full({batch, capacity}, -1, at::TensorOptions().dtype(at::kLong).device(device_));
  return cache;
}

at::Tensor LlamaModel::ForwardCached(const at::Tensor& input_ids, const at::Tensor& position_ids,
                                     KvCache* cache) const {
  at::NoGradGuard no_grad;
  const int64_t batch = input_ids.size(0), seq = input_ids.size(1);
  TORCH_CHECK(batch == cache->batch(), "input rows and KV cache rows differ");
  TORCH_CHECK(cache->length + seq <= cache->capacity(), "KV cache full; allocate a larger capacity");
  at::Tensor positions = position_ids.to(device_);
  cache->positions.narrow(1, cache->length, seq).copy_(positions);
  const int64_t total = cache->length + seq;
  // Which cached slot each new token may attend to: real, not after it, inside the window.
  at::Tensor key_pos = cache->positions.narrow(1, 0, total).unsqueeze(1);  // [batch, 1, total]
  at::Tensor query_pos = positions.unsqueeze(2);                           // [batch, n, 1]
  at::Tensor allowed = key_pos.ge(0).logical_and(key_pos.le(query_pos));
  if (config_.sliding_window > 0) allowed = allowed.logical_and((query_pos - key_pos).lt(config_.sliding_window));
  // A padding token attends to itself only, so its (unused) row of scores stays finite.
  auto long_opts = at::TensorOptions().dtype(at::kLong).device(device_);
  at::Tensor self_slot =
      at::arange(total, long_opts).unsqueeze(0).eq(at::arange(cache->length, total, long_opts).unsqueeze(1));
  allowed = allowed.logical_or(self_slot.unsqueeze(0));
  LayerRun base_run{&config_, nullptr, 0, {}, {}, nullptr, {}};
  base_run.cache = cache;
  base_run.cache_mask = at::zeros(allowed.sizes(), at::TensorOptions().dtype(compute_dtype_).device(device_))
                            .masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity())
                            .unsqueeze(1);
  std::tie(base_run.cos, base_run.sin) = RopeCosSin(inv_freq_, positions.clamp_min(0));
  ForwardOptions options;  // inference: no dropout, no packing
  base_run.options = &options;
  at::Tensor x = at::embedding(embed_tokens, input_ids.to(device_)).to(compute_dtype_);
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerRun run = base_run;
    run.layer = &layers[i];
    run.layer_index = static_cast<int64_t>(i);
    x = DecoderForward(run, x);
  }
  cache->length = total;
  return RmsNorm(x, final_norm, config_.rms_norm_eps);
}

at::Tensor LlamaModel::Logits(const at::Tensor& hidden) const {
  const at::Tensor& head = lm_head.defined() ? lm_head : embed_tokens;
  return at::matmul(hidden, head.to(hidden.scalar_type()).t()).to(at::promote_types(hidden.scalar_type(), at::kFloat));
}

void LlamaModel::AttachLora(const LoraSettings& settings, uint64_t seed) {
  lora_settings_ = settings;
  for (size_t l = 0; l < layers.size(); ++l) {
    if (!settings.TargetsLayer(static_cast<int64_t>(l))) continue;
    for (int k = 0; k < kNumProjKinds; ++k) {
      if (!settings.TargetsModule(ProjName(static_cast<ProjKind>(k)))) continue;
      Projection& p = layers[l].proj[k];
      const uint64_t module_seed = seed * 1000003ULL + l * kNumProjKinds + k;
      p.lora = LoraAdapter::Create(p.weight.in_features(), p.weight.out_features(), settings, module_seed, device_);
    }
  }
}

std::map<std::string, at::Tensor> LlamaModel::LoraParameters() const {
  std::map<std::string, at::Tensor> out;
  for (size_t l = 0; l < layers.size(); ++l) {
    for (int k = 0; k < kNumProjKinds; ++k) {
      const auto& p = layers[l].proj[k];
      if (!p.lora) continue;
      out[PeftLoraName(static_cast<int64_t>(l), static_cast<ProjKind>(k), 'A')] = p.lora->a;
      out[PeftLoraName(static_cast<int64_t>(l), static_cast<ProjKind>(k), 'B')] = p.lora->b;
    }
  }
  return out;
}

int64_t LlamaModel::BaseWeightBytes() const {
  int64_t bytes = embed_tokens.numel() * embed_tokens.element_size() + final_norm.numel() * final_norm.element_size();
  if (lm_head.defined()) bytes += lm_head.numel() * lm_head.element_size();
  for (const auto& layer : layers) {
    bytes +=
        (layer.input_layernorm.numel() + layer.post_attention_layernorm.numel()) * layer.input_layernorm.element_size();
    for (const auto& p : layer.proj) {
      bytes += p.weight.StorageBytes();
      if (p.bias.defined()) bytes += p.bias.numel() * p.bias.element_size();
    }
  }
  return bytes;
}

int64_t LlamaModel::QuantizedParameterCount() const {
  int64_t n = 0;
  for (const auto& layer : layers)
    for (const auto& p : layer.proj)
      if (p.weight.is_quantized()) n += p.weight.nf4().numel;
  return n;
}

int64_t LlamaModel::QuantizedBytes() const {
  int64_t n = 0;
  for (const auto& layer : layers)
    for (const auto& p : layer.proj)
      if (p.weight.is_quantized()) n += p.weight.StorageBytes();
  return n;
}

}  // namespace polytune::engine
