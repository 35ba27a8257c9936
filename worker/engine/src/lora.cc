#include "polytune/engine/lora.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/Generator.h>
#include <torch/csrc/autograd/custom_function.h>

#include "bf16_bits.h"
#include "lora_cpu_kernels.h"

namespace polytune::engine {
namespace {

const char* const kProjNames[kNumProjKinds] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                               "gate_proj", "up_proj", "down_proj"};

uint64_t SplitMix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

const char* ProjName(ProjKind kind) { return kProjNames[static_cast<int>(kind)]; }

const char* ProjParentName(ProjKind kind) {
  return static_cast<int>(kind) <= static_cast<int>(ProjKind::kO) ? "self_attn" : "mlp";
}

bool ParseProjName(const std::string& name, ProjKind* kind) {
  for (int i = 0; i < kNumProjKinds; ++i) {
    if (name == kProjNames[i]) {
      *kind = static_cast<ProjKind>(i);
      return true;
    }
  }
  return false;
}

LoraAdapter LoraAdapter::Create(int64_t in_features, int64_t out_features, const LoraSettings& settings, uint64_t seed,
                                const at::Device& device) {
  LoraAdapter adapter;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  at::Tensor a = at::empty({settings.r, in_features}, at::kFloat);
  a.uniform_(-bound, bound, gen);
  adapter.a = a.to(device).set_requires_grad(true);
  adapter.b = at::zeros({out_features, settings.r}, at::TensorOptions().dtype(at::kFloat).device(device))
                  .set_requires_grad(true);
  adapter.scaling = settings.Scaling();
  adapter.dropout = settings.dropout;
  return adapter;
}

namespace {

POLYTUNE_ALWAYS_INLINE uint32_t Fmix32(uint32_t z) {
  z ^= z >> 16;
  z *= 0x85ebca6bu;
  z ^= z >> 13;
  z *= 0xc2b2ae35u;
  return z ^ (z >> 16);
}

// One 32-bit key per token row for this layer and module.
std::vector<int32_t> RowKeys(int64_t rows, const DropoutKey& key) {
  TORCH_CHECK(key.token_keys != nullptr && static_cast<int64_t>(key.token_keys->size()) == rows,
              "LoRA dropout needs one key per token");
  const uint32_t salt =
      Fmix32(static_cast<uint32_t>(key.layer) * 0x9e3779b1u + static_cast<uint32_t>(key.module) * 0x85ebca77u + 1u);
  std::vector<int32_t> row_keys(rows);
  for (int64_t r = 0; r < rows; ++r)
    row_keys[r] = static_cast<int32_t>(Fmix32(static_cast<uint32_t>((*key.token_keys)[r]) ^ salt));
  return row_keys;
}

// One row of ApplyHashDropout. Columns are the inner loop, with no division by the row length
// per element (which had made the dropout 8 % of a training step's CPU time), so it vectorises.
// T is float or bf16 bits; the product is computed in float and stored once, as libtorch's
// x * mask does in either dtype.
// The column counter is 32-bit (rows are shorter than 2^31, checked by the callers): with
// the loop's 64-bit index the counter had been built in 64-bit lanes and narrowed, two
// permutes per vector.
template <typename T>
POLYTUNE_ALWAYS_INLINE void HashDropoutRowImpl(const T* src, T* dst, int64_t per_row, uint32_t row_key,
                                               uint32_t threshold, float keep) {
  // The hash input c * golden + row_key is carried as a running sum (the same value mod 2^32),
  // so the vector loop adds where it had multiplied: one of its three 32-bit multiplies.
  const uint32_t n = static_cast<uint32_t>(per_row);
  uint32_t counter = row_key;
  if (src != nullptr) {
    for (uint32_t c = 0; c < n; ++c, counter += 0x9e3779b9u) {
      const uint32_t z = Fmix32(counter);
      StoreFromFloat(dst, c, (z >> 8) >= threshold ? LoadAsFloat(src, c) * keep : 0.0f);
    }
  } else {
    for (uint32_t c = 0; c < n; ++c, counter += 0x9e3779b9u) {
      const uint32_t z = Fmix32(counter);
      StoreFromFloat(dst, c, (z >> 8) >= threshold ? keep : 0.0f);
    }
  }
}

POLYTUNE_VECTOR_KERNEL(HashDropoutRow,
                       (const float* src, float* dst, int64_t per_row, uint32_t row_key, uint32_t threshold,
                        float keep),
                       (src, dst, per_row, row_key, threshold, keep))
POLYTUNE_VECTOR_KERNEL(HashDropoutRow,
                       (const uint16_t* src, uint16_t* dst, int64_t per_row, uint32_t row_key, uint32_t threshold,
                        float keep),
                       (src, dst, per_row, row_key, threshold, keep))

// CPU: the same hash as the tensor-op version, in one parallel loop over rows. dst[i] =
// src[i] * keep where the mask keeps element i, else 0; a null src stands for ones (the mask
// itself). T is float or bf16 bits; in bf16 the scale is the bf16 mask value, as in x * mask.
template <typename T>
void ApplyHashDropout(const T* src, T* dst, int64_t rows, int64_t per_row, double p,
                      const std::vector<int32_t>& row_keys) {
  // Keep u (24 bits) where float(u) >= float(p * 2^24), as the tensor-op version compares:
  // every u is exact in float, so that is u >= ceil(float(p * 2^24)). (Truncating p * 2^24
  // instead had kept u = floor(p * 2^24) too: the CPU and CUDA masks differed there.)
  TORCH_CHECK(per_row < (int64_t{1} << 31), "LoRA dropout: row too large for the 32-bit counter");
  const uint32_t threshold = static_cast<uint32_t>(std::ceil(static_cast<double>(static_cast<float>(p * 16777216.0))));
  float keep = static_cast<float>(1.0 / (1.0 - p));
  if (std::is_same_v<T, uint16_t>) keep = RoundToBf16(keep);
  const int64_t grain_rows = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, per_row));
  at::parallel_for(0, rows, grain_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      HashDropoutRow(src != nullptr ? src + r * per_row : nullptr, dst + r * per_row, per_row,
                     static_cast<uint32_t>(row_keys[r]), threshold, keep);
  });
}

at::Tensor DropoutMaskCpu(const at::Tensor& x, double p, const std::vector<int32_t>& row_keys) {
  const int64_t per_row = x.size(-1);
  at::Tensor mask = at::empty(x.sizes(), x.options().dtype(at::kFloat));
  ApplyHashDropout<float>(nullptr, mask.data_ptr<float>(), x.numel() / per_row, per_row, p, row_keys);
  return x.scalar_type() == at::kFloat ? mask : mask.to(x.scalar_type());
}

std::vector<int32_t> Narrow(const std::vector<int64_t>& keys) { return std::vector<int32_t>(keys.begin(), keys.end()); }

// out = x masked and scaled, for a contiguous fp32 or bf16 x.
at::Tensor HashDropoutCpu(const at::Tensor& x, double p, const std::vector<int32_t>& row_keys) {
  at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty_like(xc);
  const int64_t per_row = x.size(-1), rows = x.numel() / per_row;
  if (xc.scalar_type() == at::kFloat)
    ApplyHashDropout(xc.data_ptr<float>(), out.data_ptr<float>(), rows, per_row, p, row_keys);
  else
    ApplyHashDropout(Bf16Bits(xc.data_ptr<at::BFloat16>()), Bf16Bits(out.data_ptr<at::BFloat16>()), rows, per_row, p,
                     row_keys);
  return out;
}

class HashDropoutFunction : public torch::autograd::Function<HashDropoutFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double p,
                            std::vector<int64_t> row_keys) {
    ctx->saved_data["p"] = p;
    ctx->saved_data["keys"] = row_keys;
    return HashDropoutCpu(x, p, Narrow(row_keys));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return {HashDropoutCpu(grads[0], ctx->saved_data["p"].toDouble(), Narrow(ctx->saved_data["keys"].toIntVector())),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

int64_t DropoutTokenKey(uint64_t seed, int64_t step, int64_t example, int64_t position) {
  uint64_t h = SplitMix64(seed);
  h = SplitMix64(h ^ static_cast<uint64_t>(step));
  h = SplitMix64(h ^ static_cast<uint64_t>(example));
  h = SplitMix64(h ^ static_cast<uint64_t>(position));
  return static_cast<int64_t>(h & 0xffffffffu);
}

// Masks treat x as [tokens, features]: one row per token.
at::Tensor ApplyLoraDropout(const at::Tensor& x, double p, const DropoutKey& key) {
  if (x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16)) {
    std::vector<int32_t> keys32 = RowKeys(x.numel() / x.size(-1), key);
    std::vector<int64_t> keys(keys32.begin(), keys32.end());
    return HashDropoutFunction::apply(x, p, keys);
  }
  return x * LoraDropoutMask(x, p, key);
}

at::Tensor LoraDropoutMask(const at::Tensor& x, double p, const DropoutKey& key) {
  const int64_t per_row = x.size(-1);
  const int64_t rows = x.numel() / per_row;
  TORCH_CHECK(per_row < (int64_t{1} << 31), "LoRA dropout: row too large for the 32-bit counter");
  std::vector<int32_t> row_keys = RowKeys(rows, key);
  if (x.device().is_cpu()) return DropoutMaskCpu(x, p, row_keys);
  return LoraDropoutMaskTensorOps(x, p, key);
}

at::Tensor LoraDropoutMaskTensorOps(const at::Tensor& x, double p, const DropoutKey& key) {
  const int64_t per_row = x.size(-1);
  const int64_t rows = x.numel() / per_row;
  std::vector<int32_t> row_keys = RowKeys(rows, key);
  // Counter = element index * golden ratio, cached: it only depends on the row length.
  thread_local at::Tensor counter;
  if (!counter.defined() || counter.numel() < per_row || counter.device() != x.device())
    counter = at::arange(per_row, at::TensorOptions().dtype(at::kInt).device(x.device()))
                  .mul(static_cast<int32_t>(0x9e3779b9u));
  at::Tensor z =
      counter.slice(0, 0, per_row).unsqueeze(0) + at::from_blob(row_keys.data(), {rows, 1}, at::kInt).to(x.device());
  // murmur3's fmix32 on int32 lanes (multiplication wraps like uint32; shifts made logical).
  auto shr = [](const at::Tensor& t, int k) {
    return at::bitwise_and(at::bitwise_right_shift(t, k), static_cast<int32_t>(0xffffffffu >> k));
  };
  z = at::bitwise_xor(z, shr(z, 16)).mul_(static_cast<int32_t>(0x85ebca6bu));
  z = at::bitwise_xor(z, shr(z, 13)).mul_(static_cast<int32_t>(0xc2b2ae35u));
  z = at::bitwise_xor(z, shr(z, 16));
  // Top 24 bits as a uniform in [0, 1).
  at::Tensor u = shr(z, 8).to(at::kFloat);
  at::Tensor keep = u.ge_(static_cast<float>(p * 16777216.0)).to(x.scalar_type()).mul_(1.0 / (1.0 - p));
  return keep.view(x.sizes());
}

namespace {

// LoRA dropout's mask for the fused CPU kernels: the same threshold and scale as
// ApplyHashDropout in fp32.
lora_cpu::RowMask KernelMask(double p, const std::vector<int32_t>& row_keys) {
  lora_cpu::RowMask mask;
  mask.row_keys = row_keys.data();
  mask.threshold = static_cast<uint32_t>(std::ceil(static_cast<double>(static_cast<float>(p * 16777216.0))));
  mask.keep = static_cast<float>(1.0 / (1.0 - p));
  return mask;
}

// r rounded up to the kernels' multiple of 16; the extra ranks are zero rows of A and zero
// columns of B, so they add exact zeros and get gradients that are cut off.
int64_t PaddedRank(int64_t r) { return (r + 15) / 16 * 16; }

at::Tensor PadRows(const at::Tensor& t, int64_t rows) {
  if (t.size(0) == rows) return t.contiguous();
  return at::cat({t, at::zeros({rows - t.size(0), t.size(1)}, t.options())}, 0);
}

// base [rows, out] += scaling * (dropout(x) @ A^T) @ B^T, with x [rows, in] and the mask of
// `row_keys` (empty: no dropout). Returns h = dropout(x) @ A^T [rows, padded r] for backward.
at::Tensor LoraCpuForward(const at::Tensor& base, const at::Tensor& x, const at::Tensor& a, const at::Tensor& b,
                          double scaling, double p, const std::vector<int32_t>& row_keys) {
  const int64_t rows = x.size(0), in = x.size(1), out = base.size(1), rp = PaddedRank(a.size(0));
  const at::Tensor a_t = PadRows(a.detach(), rp).t().contiguous();  // [in, rp]
  const at::Tensor b_t = PadRows(b.detach().t(), rp).contiguous();  // [rp, out]
  at::Tensor h = at::empty({rows, rp}, x.options());
  lora_cpu::RowMask mask;
  if (p > 0.0) mask = KernelMask(p, row_keys);
  lora_cpu::RowsTimesNarrow(x.data_ptr<float>(), rows, in, a_t.data_ptr<float>(), rp, 1.0f, p > 0.0 ? &mask : nullptr,
                            h.data_ptr<float>());
  lora_cpu::NarrowTimesWide(h.data_ptr<float>(), rows, rp, b_t.data_ptr<float>(), out, static_cast<float>(scaling),
                            nullptr, /*accumulate=*/true, base.data_ptr<float>());
  return h;
}

// The adapter's forward and backward on CPU fp32 through lora_cpu's kernels (see
// lora_cpu_kernels.h). Inputs: the base output (accumulated into in place and returned), x
// [rows, in] contiguous, A, B. Saves x itself and h [rows, r]: the masked x is recomputed by
// the kernels where backward reads it, never stored.
class LoraCpuFunction : public torch::autograd::Function<LoraCpuFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor base, const at::Tensor& x,
                            const at::Tensor& a, const at::Tensor& b, double scaling, double p,
                            std::vector<int64_t> row_keys) {
    const at::Tensor h = LoraCpuForward(base, x, a, b, scaling, p, Narrow(row_keys));
    ctx->mark_dirty({base});
    ctx->save_for_backward({x, h, a, b});
    ctx->saved_data["scaling"] = scaling;
    ctx->saved_data["p"] = p;
    ctx->saved_data["keys"] = std::move(row_keys);
    return base;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &h = saved[1], &a = saved[2], &b = saved[3];
    const double scaling = ctx->saved_data["scaling"].toDouble(), p = ctx->saved_data["p"].toDouble();
    const std::vector<int32_t> row_keys = Narrow(ctx->saved_data["keys"].toIntVector());
    const at::Tensor g = grads[0].contiguous();
    const int64_t rows = x.size(0), in = x.size(1), out = g.size(1), r = a.size(0), rp = h.size(1);
    lora_cpu::RowMask mask;
    if (p > 0.0) mask = KernelMask(p, row_keys);
    const lora_cpu::RowMask* masked = p > 0.0 ? &mask : nullptr;
    // dL/dh = scaling * g @ B, [rows, rp]
    const at::Tensor b_padded = PadRows(b.detach().t(), rp).t().contiguous();  // [out, rp]
    at::Tensor grad_h = at::empty({rows, rp}, g.options());
    lora_cpu::RowsTimesNarrow(g.data_ptr<float>(), rows, out, b_padded.data_ptr<float>(), rp,
                              static_cast<float>(scaling), nullptr, grad_h.data_ptr<float>());
    at::Tensor grad_x, grad_a, grad_b;
    if (ctx->needs_input_grad(3)) {  // dL/dB = scaling * g^T @ h, computed as its transpose [rp, out]
      at::Tensor t = at::empty({rp, out}, g.options());
      lora_cpu::NarrowTransposedTimesRows(h.data_ptr<float>(), rows, rp, g.data_ptr<float>(), out,
                                          static_cast<float>(scaling), nullptr, t.data_ptr<float>());
      grad_b = t.slice(0, 0, r).t().contiguous();
    }
    if (ctx->needs_input_grad(2)) {  // dL/dA = grad_h^T @ dropout(x), [rp, in]
      at::Tensor t = at::empty({rp, in}, g.options());
      lora_cpu::NarrowTransposedTimesRows(grad_h.data_ptr<float>(), rows, rp, x.data_ptr<float>(), in, 1.0f, masked,
                                          t.data_ptr<float>());
      grad_a = rp == r ? t : t.slice(0, 0, r).contiguous();
    }
    if (ctx->needs_input_grad(1)) {  // dL/dx = mask(grad_h @ A)
      const at::Tensor a_padded = PadRows(a.detach(), rp);
      grad_x = at::empty({rows, in}, g.options());
      lora_cpu::NarrowTimesWide(grad_h.data_ptr<float>(), rows, rp, a_padded.data_ptr<float>(), in, 1.0f, masked,
                                /*accumulate=*/false, grad_x.data_ptr<float>());
    }
    return {grads[0], grad_x, grad_a, grad_b, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Whether AddTo takes lora_cpu's kernels: fp32 on a CPU that runs them, feature counts the
// kernels take, and a base output AddTo may accumulate into.
bool UsesCpuKernels(const at::Tensor& base_out, const at::Tensor& x, const at::Tensor& a) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat && base_out.scalar_type() == at::kFloat &&
         a.scalar_type() == at::kFloat && lora_cpu::Available() && x.size(-1) % 16 == 0 && base_out.dim() == 2 &&
         base_out.size(1) % 16 == 0 && base_out.is_contiguous() && !base_out.is_view() &&
         !(base_out.is_leaf() && base_out.requires_grad());
}

}  // namespace

at::Tensor LoraAdapter::Forward(const at::Tensor& x, bool training, const DropoutKey& key) const {
  return AddTo(at::zeros({}, x.options()), x, training, key);
}

at::Tensor LoraAdapter::AddTo(const at::Tensor& base_out, const at::Tensor& x, bool training,
                              const DropoutKey& key) const {
  if (UsesCpuKernels(base_out, x, a)) {
    const at::Tensor rows = x.reshape({-1, x.size(-1)}).contiguous();
    const double p = training ? dropout : 0.0;
    std::vector<int32_t> keys32;
    if (p > 0.0) keys32 = RowKeys(rows.size(0), key);
    if (at::GradMode::is_enabled() && (rows.requires_grad() || a.requires_grad() || b.requires_grad()))
      return LoraCpuFunction::apply(base_out, rows, a, b, scaling, p,
                                    std::vector<int64_t>(keys32.begin(), keys32.end()));
    LoraCpuForward(base_out, rows, a, b, scaling, p, keys32);
    return base_out;
  }
  at::Tensor input = x;
  if (training && dropout > 0.0) input = ApplyLoraDropout(x, dropout, key);
  const auto dtype = x.scalar_type();
  const int64_t in = x.size(-1);
  at::Tensor h = at::matmul(input.reshape({-1, in}), a.to(dtype).t());  // [rows, r]
  // base + scaling * h @ B^T as one GEMM with accumulation.
  if (base_out.dim() == 2 && base_out.is_contiguous() && !base_out.is_view() &&
      !(base_out.is_leaf() && base_out.requires_grad()))
    return base_out.addmm_(h, b.to(dtype).t(), /*beta=*/1.0, /*alpha=*/scaling);
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = b.size(0);
  at::Tensor base2d = base_out.dim() == 0 ? base_out.expand({h.size(0), b.size(0)}) : base_out.reshape({-1, b.size(0)});
  return at::addmm(base2d, h, b.to(dtype).t(), /*beta=*/1.0, /*alpha=*/scaling).view(out_shape);
}

}  // namespace polytune::engine
