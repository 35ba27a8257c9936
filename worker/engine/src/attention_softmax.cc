#include "polytune/engine/attention_softmax.h"

#include <algorithm>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "bf16_bits.h"

namespace polytune::engine {
namespace {

constexpr int kLanes = 16;

// One row of softmax's backward: dx = p (g - sum(g p)), in fp32 from bf16 p and g.
POLYTUNE_ALWAYS_INLINE void SoftmaxBackwardRowImpl(const uint16_t* g, const uint16_t* p, uint16_t* dx, int64_t n) {
  float lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += Bf16ToFloat(g[i + l]) * Bf16ToFloat(p[i + l]);
  float dot = 0;
  for (int l = 0; l < kLanes; ++l) dot += lane[l];
  for (; i < n; ++i) dot += Bf16ToFloat(g[i]) * Bf16ToFloat(p[i]);
  for (int64_t j = 0; j < n; ++j) dx[j] = FloatToBf16(Bf16ToFloat(p[j]) * (Bf16ToFloat(g[j]) - dot));
}
POLYTUNE_VECTOR_KERNEL(SoftmaxBackwardRow, (const uint16_t* g, const uint16_t* p, uint16_t* dx, int64_t n),
                       (g, p, dx, n))

class Bf16SoftmaxFunction : public torch::autograd::Function<Bf16SoftmaxFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& scores) {
    at::Tensor probs = at::_softmax(scores.contiguous(), -1, /*half_to_float=*/false);
    ctx->save_for_backward({probs});
    return probs;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor probs = ctx->get_saved_variables()[0];
    const at::Tensor g = grads[0].to(at::kBFloat16).contiguous();
    at::Tensor dx = at::empty_like(probs);
    const int64_t n = probs.size(-1), rows = probs.numel() / std::max<int64_t>(1, n);
    const uint16_t *gp = Elements<uint16_t>(g), *pp = Elements<uint16_t>(probs);
    uint16_t* dp = Elements<uint16_t>(dx);
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, n));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) SoftmaxBackwardRow(gp + r * n, pp + r * n, dp + r * n, n);
    });
    return {dx};
  }
};

}  // namespace

at::Tensor AttentionSoftmaxTensorOps(const at::Tensor& scores) {
  return at::softmax(scores, -1, at::promote_types(scores.scalar_type(), at::kFloat)).to(scores.scalar_type());
}

at::Tensor AttentionSoftmax(const at::Tensor& scores) {
  if (scores.is_cpu() && scores.scalar_type() == at::kBFloat16 && scores.dim() >= 1 && scores.size(-1) > 0)
    return Bf16SoftmaxFunction::apply(scores);
  return AttentionSoftmaxTensorOps(scores);
}

}  // namespace polytune::engine
