#include "polytune/engine/attention_softmax.h"

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "bf16_bits.h"
#include "vector_exp.h"

namespace polytune::engine {
namespace {

constexpr int kLanes = 16;

// One row of softmax's backward times `scale`: dx = scale p (g - sum(g p)), in fp32 from p and
// g (float or bf16 bits), rounded once. scale 1 is the plain backward (the product is exact).
template <typename T>
POLYTUNE_ALWAYS_INLINE void SoftmaxBackwardRowImpl(const T* g, const T* p, T* dx, int64_t n, float scale) {
  float lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += LoadAsFloat(g, i + l) * LoadAsFloat(p, i + l);
  float dot = 0;
  for (int l = 0; l < kLanes; ++l) dot += lane[l];
  for (; i < n; ++i) dot += LoadAsFloat(g, i) * LoadAsFloat(p, i);
  for (int64_t j = 0; j < n; ++j) StoreFromFloat(dx, j, scale * (LoadAsFloat(p, j) * (LoadAsFloat(g, j) - dot)));
}
POLYTUNE_VECTOR_KERNEL(SoftmaxBackwardRow, (const uint16_t* g, const uint16_t* p, uint16_t* dx, int64_t n, float scale),
                       (g, p, dx, n, scale))
POLYTUNE_VECTOR_KERNEL(SoftmaxBackwardRow, (const float* g, const float* p, float* dx, int64_t n, float scale),
                       (g, p, dx, n, scale))

// One row of the causal softmax: x = scale * s rounded to the stored type (as a separate
// scaling op would store it), over the first `valid` entries; p = exp(x - max) / sum there, 0
// after. `e` is a float buffer of at least `valid` entries.
template <typename T>
POLYTUNE_ALWAYS_INLINE void CausalSoftmaxRowImpl(const T* s, T* p, float* e, int64_t n, int64_t valid, float scale) {
  float lane_max[kLanes];
  for (int l = 0; l < kLanes; ++l) lane_max[l] = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < valid; ++j) {
    float x = scale * LoadAsFloat(s, j);
    if constexpr (!std::is_same_v<T, float>) x = RoundToBf16(x);
    e[j] = x;
  }
  int64_t j = 0;
  for (; j + kLanes <= valid; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lane_max[l] = e[j + l] > lane_max[l] ? e[j + l] : lane_max[l];
  float m = -std::numeric_limits<float>::infinity();
  for (; j < valid; ++j) m = std::max(m, e[j]);
  for (int l = 0; l < kLanes; ++l) m = std::max(m, lane_max[l]);
  for (j = 0; j < valid; ++j) e[j] = ExpClamped(e[j] - m);
  float lane_sum[kLanes] = {};
  for (j = 0; j + kLanes <= valid; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lane_sum[l] += e[j + l];
  float sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += lane_sum[l];
  for (; j < valid; ++j) sum += e[j];
  const float inv = 1.0f / sum;
  for (j = 0; j < valid; ++j) StoreFromFloat(p, j, e[j] * inv);
  for (j = valid; j < n; ++j) StoreFromFloat(p, j, 0.0f);
}
POLYTUNE_VECTOR_KERNEL(CausalSoftmaxRow,
                       (const uint16_t* s, uint16_t* p, float* e, int64_t n, int64_t valid, float scale),
                       (s, p, e, n, valid, scale))
POLYTUNE_VECTOR_KERNEL(CausalSoftmaxRow, (const float* s, float* p, float* e, int64_t n, int64_t valid, float scale),
                       (s, p, e, n, valid, scale))

int64_t RowGrain(int64_t n) { return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, n)); }

template <typename T>
void SoftmaxBackwardRows(const at::Tensor& grad, const at::Tensor& probs, at::Tensor& out, float scale) {
  const int64_t n = probs.size(-1), rows = probs.numel() / std::max<int64_t>(1, n);
  const T *gp = Elements<T>(grad), *pp = Elements<T>(probs);
  T* dp = Elements<T>(out);
  at::parallel_for(0, rows, RowGrain(n), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) SoftmaxBackwardRow(gp + r * n, pp + r * n, dp + r * n, n, scale);
  });
}

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
    SoftmaxBackwardRows<uint16_t>(g, probs, dx, 1.0f);
    return {dx};
  }
};

}  // namespace

at::Tensor CausalSoftmaxRows(const at::Tensor& scores, double scale, int64_t first_row) {
  TORCH_CHECK(scores.is_cpu() && scores.dim() == 3 && scores.is_contiguous() &&
                  (scores.scalar_type() == at::kFloat || scores.scalar_type() == at::kBFloat16),
              "CausalSoftmaxRows: contiguous fp32 or bf16 [batch, rows, keys] on CPU");
  const int64_t rows = scores.size(1), n = scores.size(2), count = scores.size(0) * rows;
  TORCH_CHECK(first_row >= 0 && first_row + rows <= n, "CausalSoftmaxRows: rows ", first_row, "..", first_row + rows,
              " need that many keys, have ", n);
  at::Tensor probs = at::empty_like(scores);
  const bool bf16 = scores.scalar_type() == at::kBFloat16;
  at::parallel_for(0, count, RowGrain(n), [&](int64_t begin, int64_t end) {
    std::vector<float> e(static_cast<size_t>(n));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t valid = first_row + r % rows + 1;
      if (bf16)
        CausalSoftmaxRow(Elements<uint16_t>(scores) + r * n, Elements<uint16_t>(probs) + r * n, e.data(), n, valid,
                         static_cast<float>(scale));
      else
        CausalSoftmaxRow(scores.data_ptr<float>() + r * n, probs.data_ptr<float>() + r * n, e.data(), n, valid,
                         static_cast<float>(scale));
    }
  });
  return probs;
}

at::Tensor SoftmaxBackwardRows(const at::Tensor& grad, const at::Tensor& probs, double scale) {
  TORCH_CHECK(probs.is_cpu() && probs.is_contiguous() &&
                  (probs.scalar_type() == at::kFloat || probs.scalar_type() == at::kBFloat16),
              "SoftmaxBackwardRows: contiguous fp32 or bf16 probabilities on CPU");
  const at::Tensor g = grad.to(probs.scalar_type()).contiguous();
  TORCH_CHECK(g.sizes() == probs.sizes(), "SoftmaxBackwardRows: gradient and probabilities differ in shape");
  at::Tensor dx = at::empty_like(probs);
  if (probs.scalar_type() == at::kBFloat16)
    SoftmaxBackwardRows<uint16_t>(g, probs, dx, static_cast<float>(scale));
  else
    SoftmaxBackwardRows<float>(g, probs, dx, static_cast<float>(scale));
  return dx;
}

at::Tensor AttentionSoftmaxTensorOps(const at::Tensor& scores) {
  return at::softmax(scores, -1, at::promote_types(scores.scalar_type(), at::kFloat)).to(scores.scalar_type());
}

at::Tensor AttentionSoftmax(const at::Tensor& scores) {
  if (scores.is_cpu() && scores.scalar_type() == at::kBFloat16 && scores.dim() >= 1 && scores.size(-1) > 0)
    return Bf16SoftmaxFunction::apply(scores);
  return AttentionSoftmaxTensorOps(scores);
}

}  // namespace polytune::engine
