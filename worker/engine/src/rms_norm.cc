#include "polytune/engine/rms_norm.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "bf16_bits.h"

namespace polytune::engine {
namespace {

constexpr int kLanes = 16;

template <typename T>
POLYTUNE_ALWAYS_INLINE float Stored(float v) {
  return std::is_same_v<T, uint16_t> ? RoundToBf16(v) : v;
}

// Sum of a[i] * b[i] over a row, in kLanes fp32 lanes, then the lanes in order.
template <typename T, typename U>
POLYTUNE_ALWAYS_INLINE float DotLanes(const T* a, const U* b, int64_t n) {
  float lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += LoadAsFloat(a, i + l) * LoadAsFloat(b, i + l);
  float s = 0;
  for (int l = 0; l < kLanes; ++l) s += lane[l];
  for (; i < n; ++i) s += LoadAsFloat(a, i) * LoadAsFloat(b, i);
  return s;
}

template <typename T>
POLYTUNE_ALWAYS_INLINE void RmsNormRowImpl(const T* x, const T* w, T* y, int64_t n, float eps, float* inv_out) {
  const float inv = 1.0f / std::sqrt(DotLanes(x, x, n) / static_cast<float>(n) + eps);
  *inv_out = inv;
  for (int64_t i = 0; i < n; ++i) StoreFromFloat(y, i, LoadAsFloat(w, i) * Stored<T>(LoadAsFloat(x, i) * inv));
}

// dx = inv (g - xhat mean(g xhat)) with g = dy w and xhat = x inv, in fp32; `g` is scratch.
template <typename T>
POLYTUNE_ALWAYS_INLINE void RmsNormBackwardRowImpl(const T* dy, const T* x, const T* w, float inv, float* g, T* dx,
                                                   int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = LoadAsFloat(dy, i) * LoadAsFloat(w, i);
  const float mean_gx = DotLanes(g, x, n) * inv / static_cast<float>(n);
  for (int64_t i = 0; i < n; ++i) StoreFromFloat(dx, i, inv * (g[i] - LoadAsFloat(x, i) * inv * mean_gx));
}

POLYTUNE_VECTOR_KERNEL(RmsNormRow, (const float* x, const float* w, float* y, int64_t n, float eps, float* inv),
                       (x, w, y, n, eps, inv))
POLYTUNE_VECTOR_KERNEL(RmsNormRow,
                       (const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t n, float eps, float* inv),
                       (x, w, y, n, eps, inv))
POLYTUNE_VECTOR_KERNEL(RmsNormBackwardRow,
                       (const float* dy, const float* x, const float* w, float inv, float* g, float* dx, int64_t n),
                       (dy, x, w, inv, g, dx, n))
POLYTUNE_VECTOR_KERNEL(RmsNormBackwardRow,
                       (const uint16_t* dy, const uint16_t* x, const uint16_t* w, float inv, float* g, uint16_t* dx,
                        int64_t n),
                       (dy, x, w, inv, g, dx, n))

int64_t GrainRows(int64_t n) { return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, n)); }

template <typename T>
void Forward(const at::Tensor& x, const at::Tensor& w, double eps, at::Tensor& y, at::Tensor& inv) {
  const int64_t n = x.size(-1), rows = x.numel() / n;
  const T *xp = Elements<T>(x), *wp = Elements<T>(w);
  T* yp = Elements<T>(y);
  float* ip = inv.data_ptr<float>();
  at::parallel_for(0, rows, GrainRows(n), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) RmsNormRow(xp + r * n, wp, yp + r * n, n, static_cast<float>(eps), ip + r);
  });
}

template <typename T>
void Backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& w, const at::Tensor& inv, at::Tensor& dx) {
  const int64_t n = x.size(-1), rows = x.numel() / n;
  const T *dyp = Elements<T>(dy), *xp = Elements<T>(x), *wp = Elements<T>(w);
  T* dxp = Elements<T>(dx);
  const float* ip = inv.data_ptr<float>();
  at::parallel_for(0, rows, GrainRows(n), [&](int64_t begin, int64_t end) {
    std::vector<float> g(n);
    for (int64_t r = begin; r < end; ++r)
      RmsNormBackwardRow(dyp + r * n, xp + r * n, wp, ip[r], g.data(), dxp + r * n, n);
  });
}

class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            double eps) {
    at::Tensor xc = x.contiguous(), w = weight.contiguous();
    at::Tensor y = at::empty_like(xc), inv = at::empty({xc.numel() / xc.size(-1)}, at::kFloat);
    if (xc.scalar_type() == at::kFloat)
      Forward<float>(xc, w, eps, y, inv);
    else
      Forward<uint16_t>(xc, w, eps, y, inv);
    ctx->save_for_backward({xc, w, inv});
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &inv = saved[2];
    at::Tensor dy = grads[0].to(x.scalar_type()).contiguous();
    at::Tensor dx = at::empty_like(x);
    if (x.scalar_type() == at::kFloat)
      Backward<float>(dy, x, w, inv, dx);
    else
      Backward<uint16_t>(dy, x, w, inv, dx);
    return {dx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor RmsNormTensorOps(const at::Tensor& x, const at::Tensor& weight, double eps) {
  // fp32 statistics (HF); a float64 input stays float64 so gradient checks can run exactly.
  at::Tensor xf = x.to(at::promote_types(x.scalar_type(), at::kFloat));
  at::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  xf = xf * at::rsqrt(variance + eps);
  return weight * xf.to(x.scalar_type());
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const auto dtype = x.scalar_type();
  if (x.is_cpu() && (dtype == at::kFloat || dtype == at::kBFloat16) && weight.scalar_type() == dtype &&
      weight.dim() == 1 && x.dim() >= 1 && x.size(-1) == weight.size(0) && x.size(-1) > 0 && !weight.requires_grad())
    return RmsNormFunction::apply(x, weight, eps);
  return RmsNormTensorOps(x, weight, eps);
}

}  // namespace polytune::engine
