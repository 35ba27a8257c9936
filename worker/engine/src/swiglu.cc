#include "polytune/engine/swiglu.h"

#include <cstdint>
#include <cstring>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

namespace polytune::engine {
namespace {

// expf for the vector loops below: Cody-Waite reduction x = n ln2 + r (|r| <= ln2 / 2), a
// degree-7 Taylor polynomial for e^r (truncation 5e-9 relative, under the float rounding),
// and 2^n built in the exponent bits. x is clamped to [-87, 88], where 2^n stays a normal
// float; silu needs no more (exp(-x) beyond that range makes sigmoid 0 or 1 to float
// precision). Straight-line float and integer arithmetic, so GCC vectorises the loops.
inline float ExpClamped(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Round x / ln2 to the nearest integer with the 1.5 * 2^23 trick (no float->int call).
  const float shifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  int32_t bits;
  std::memcpy(&bits, &t, sizeof(bits));
  bits -= 0x4B400000;                                           // the shifter's own bits: leaves n as an integer
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 split: hi exact, lo
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t scale_bits = (bits + 127) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof(scale));
  return p * scale;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void SwiGluForwardRange(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + ExpClamped(-g)) * up[i];
  }
}

// d silu(g) / dg = s (1 + g (1 - s)) with s = sigmoid(g), as torch's silu_backward.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void SwiGluBackwardRange(const float* grad, const float* gate, const float* up, float* grad_gate, float* grad_up,
                         int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], dy = grad[i];
    const float s = 1.0f / (1.0f + ExpClamped(-g));
    grad_up[i] = dy * (g * s);
    grad_gate[i] = dy * up[i] * (s * (1.0f + g * (1.0f - s)));
  }
}

constexpr int64_t kGrain = 1 << 14;

class SwiGluFunction : public torch::autograd::Function<SwiGluFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    at::Tensor g = gate.contiguous(), u = up.contiguous();
    at::Tensor out = at::empty_like(g);
    const float *gp = g.data_ptr<float>(), *upp = u.data_ptr<float>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, g.numel(), kGrain, [&](int64_t begin, int64_t end) {
      SwiGluForwardRange(gp + begin, upp + begin, op + begin, end - begin);
    });
    ctx->save_for_backward({g, u});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& g = saved[0];
    const at::Tensor& u = saved[1];
    at::Tensor dy = grads[0].contiguous();
    at::Tensor dg = at::empty_like(g), du = at::empty_like(u);
    const float *dyp = dy.data_ptr<float>(), *gp = g.data_ptr<float>(), *upp = u.data_ptr<float>();
    float *dgp = dg.data_ptr<float>(), *dup = du.data_ptr<float>();
    at::parallel_for(0, g.numel(), kGrain, [&](int64_t begin, int64_t end) {
      SwiGluBackwardRange(dyp + begin, gp + begin, upp + begin, dgp + begin, dup + begin, end - begin);
    });
    return {dg, du};
  }
};

}  // namespace

at::Tensor SwiGluTensorOps(const at::Tensor& gate, const at::Tensor& up) { return at::silu(gate) * up; }

at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up) {
  if (gate.device().is_cpu() && up.device().is_cpu() && gate.scalar_type() == at::kFloat &&
      up.scalar_type() == at::kFloat && gate.sizes() == up.sizes())
    return SwiGluFunction::apply(gate, up);
  return SwiGluTensorOps(gate, up);
}

}  // namespace polytune::engine
