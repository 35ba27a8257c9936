#include "polytune/engine/swiglu.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "bf16_bits.h"
#include "vector_exp.h"

namespace polytune::engine {
namespace {

// T is float or bf16 bits. In bf16 every intermediate libtorch's silu(gate) * up would store
// in bf16 is rounded to bf16 here too (silu(g); dy * up before silu's backward), so the fused
// pass differs from the tensor ops only by the exp approximation, not by extra precision.
template <typename T>
POLYTUNE_ALWAYS_INLINE float Stored(float v) {
  return std::is_same_v<T, uint16_t> ? RoundToBf16(v) : v;
}

template <typename T>
POLYTUNE_ALWAYS_INLINE void SwiGluForwardRangeImpl(const T* gate, const T* up, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = LoadAsFloat(gate, i);
    StoreFromFloat(out, i, Stored<T>(g / (1.0f + ExpClamped(-g))) * LoadAsFloat(up, i));
  }
}

// d silu(g) / dg = s (1 + g (1 - s)) with s = sigmoid(g), as torch's silu_backward.
template <typename T>
POLYTUNE_ALWAYS_INLINE void SwiGluBackwardRangeImpl(const T* grad, const T* gate, const T* up, T* grad_gate, T* grad_up,
                                                    int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = LoadAsFloat(gate, i), dy = LoadAsFloat(grad, i);
    const float s = 1.0f / (1.0f + ExpClamped(-g));
    StoreFromFloat(grad_up, i, dy * Stored<T>(g * s));
    StoreFromFloat(grad_gate, i, Stored<T>(dy * LoadAsFloat(up, i)) * (s * (1.0f + g * (1.0f - s))));
  }
}

POLYTUNE_VECTOR_KERNEL(SwiGluForwardRange, (const float* gate, const float* up, float* out, int64_t n),
                       (gate, up, out, n))
POLYTUNE_VECTOR_KERNEL(SwiGluForwardRange, (const uint16_t* gate, const uint16_t* up, uint16_t* out, int64_t n),
                       (gate, up, out, n))
POLYTUNE_VECTOR_KERNEL(SwiGluBackwardRange,
                       (const float* grad, const float* gate, const float* up, float* grad_gate, float* grad_up,
                        int64_t n),
                       (grad, gate, up, grad_gate, grad_up, n))
POLYTUNE_VECTOR_KERNEL(SwiGluBackwardRange,
                       (const uint16_t* grad, const uint16_t* gate, const uint16_t* up, uint16_t* grad_gate,
                        uint16_t* grad_up, int64_t n),
                       (grad, gate, up, grad_gate, grad_up, n))

constexpr int64_t kGrain = 1 << 14;

class SwiGluFunction : public torch::autograd::Function<SwiGluFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    at::Tensor g = gate.contiguous(), u = up.contiguous();
    at::Tensor out = at::empty_like(g);
    if (g.scalar_type() == at::kFloat)
      Forward<float>(g, u, out);
    else
      Forward<uint16_t>(g, u, out);
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
    if (g.scalar_type() == at::kFloat)
      Backward<float>(dy, g, u, dg, du);
    else
      Backward<uint16_t>(dy, g, u, dg, du);
    return {dg, du};
  }

 private:
  template <typename T>
  static void Forward(const at::Tensor& g, const at::Tensor& u, const at::Tensor& out) {
    const T *gp = Elements<T>(g), *upp = Elements<T>(u);
    T* op = Elements<T>(out);
    at::parallel_for(0, g.numel(), kGrain, [&](int64_t begin, int64_t end) {
      SwiGluForwardRange(gp + begin, upp + begin, op + begin, end - begin);
    });
  }
  template <typename T>
  static void Backward(const at::Tensor& dy, const at::Tensor& g, const at::Tensor& u, const at::Tensor& dg,
                       const at::Tensor& du) {
    const T *dyp = Elements<T>(dy), *gp = Elements<T>(g), *upp = Elements<T>(u);
    T *dgp = Elements<T>(dg), *dup = Elements<T>(du);
    at::parallel_for(0, g.numel(), kGrain, [&](int64_t begin, int64_t end) {
      SwiGluBackwardRange(dyp + begin, gp + begin, upp + begin, dgp + begin, dup + begin, end - begin);
    });
  }
};

}  // namespace

at::Tensor SwiGluTensorOps(const at::Tensor& gate, const at::Tensor& up) { return at::silu(gate) * up; }

at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up) {
  const auto dtype = gate.scalar_type();
  if (gate.device().is_cpu() && up.device().is_cpu() && (dtype == at::kFloat || dtype == at::kBFloat16) &&
      up.scalar_type() == dtype && gate.sizes() == up.sizes())
    return SwiGluFunction::apply(gate, up);
  return SwiGluTensorOps(gate, up);
}

}  // namespace polytune::engine
