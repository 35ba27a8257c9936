// LoRA adapters (Hu et al. 2021) with PEFT's semantics and initialisation.
//
// y = base(x) + B(A(dropout(x))) * scaling, scaling = alpha / r (or alpha / sqrt(r) with
// rsLoRA). A is [r, in] kaiming-uniform(a = sqrt 5), i.e. U(-1/sqrt(in), 1/sqrt(in)); B is
// [out, r] zeros. A and B are fp32 leaves; the product is computed in the input's dtype.
// On CPU, fp32 inputs take fused kernels (src/lora_cpu_kernels.h) where the CPU has AVX-512
// and the feature counts are multiples of 16: the same values within fp32 rounding.
//
// Dropout masks are a pure function of (token key, layer, module, feature): a counter-based
// hash. A token's key comes from (seed, step, example, position in the example), so an
// example sees the same mask however the global batch is split into micro-batches and ranks
// and whether or not it is packed with others, and activation checkpointing recomputes
// exactly the forward's masks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "polytune/spec/job_spec.h"

namespace polytune::engine {

// The seven projection modules of a decoder block, in PEFT naming.
enum class ProjKind { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
constexpr int kNumProjKinds = 7;
const char* ProjName(ProjKind kind);        // "q_proj", ...
const char* ProjParentName(ProjKind kind);  // "self_attn" or "mlp"
bool ParseProjName(const std::string& name, ProjKind* kind);

// r, alpha, dropout, rsLoRA, target modules and layers, as the job spec holds them.
using LoraSettings = spec::LoraSettings;

// Identifies which dropout mask a LoRA input gets.
struct DropoutKey {
  int64_t layer = 0;
  int module = 0;
  const std::vector<int64_t>* token_keys = nullptr;  // one per token (batch x seq, row-major)
};

// The key of a token: example is its stream position, position its index in the example.
int64_t DropoutTokenKey(uint64_t seed, int64_t step, int64_t example, int64_t position);

struct LoraAdapter {
  at::Tensor a;  // [r, in], fp32, requires_grad
  at::Tensor b;  // [out, r], fp32, requires_grad
  double scaling = 1.0;
  double dropout = 0.0;

  static LoraAdapter Create(int64_t in_features, int64_t out_features, const LoraSettings& settings, uint64_t seed,
                            const at::Device& device);
  // The adapter's delta for input x [batch, seq, in]; `key` is only read when dropout applies.
  at::Tensor Forward(const at::Tensor& x, bool training, const DropoutKey& key) const;
  // base_out + delta(x), fused into one GEMM with accumulation. A 2-D contiguous base_out
  // [rows, out] is consumed: the delta is accumulated into it in place and it is returned
  // (no copy of the base output first, which out-of-place addmm makes); pass a tensor nothing
  // else reads, and not a view. Other shapes get a new tensor.
  at::Tensor AddTo(const at::Tensor& base_out, const at::Tensor& x, bool training, const DropoutKey& key) const;
};

// Keep-mask scaled by 1/(1-p) for x of shape [batch, ...]; see the header comment.
at::Tensor LoraDropoutMask(const at::Tensor& x, double p, const DropoutKey& key);
// x * LoraDropoutMask(x, p, key); on CPU fp32 fused, with the mask recomputed in backward.
at::Tensor ApplyLoraDropout(const at::Tensor& x, double p, const DropoutKey& key);
// The device-generic (tensor-op) implementation CUDA uses; CPU runs a fused loop with the
// same hash. Exposed so CPU-only tests keep the accelerator path honest.
at::Tensor LoraDropoutMaskTensorOps(const at::Tensor& x, double p, const DropoutKey& key);

}  // namespace polytune::engine
