#include "polytune/engine/rope.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "bf16_bits.h"

namespace polytune::engine {

at::Tensor RopeInverseFrequencies(const ModelConfig& config) {
  const int64_t d = config.head_dim;
  // 1 / theta^(arange(0, d, 2) / d), in fp32 like transformers.
  at::Tensor exponents = at::arange(0, d, 2, at::kLong).to(at::kFloat) / static_cast<double>(d);
  at::Tensor inv_freq = at::pow(config.rope_theta, exponents).reciprocal();
  if (!config.rope_scaling) return inv_freq;
  const RopeScaling& s = *config.rope_scaling;
  if (s.type == RopeScaling::Type::kLinear) return inv_freq / s.factor;
  // Llama 3: long wavelengths slowed by `factor`, short ones kept, a smooth blend between.
  const double old_len = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / s.low_freq_factor;
  const double high_freq_wavelen = old_len / s.high_freq_factor;
  at::Tensor wavelen = 2 * M_PI / inv_freq;
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  at::Tensor smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  at::Tensor is_medium =
      at::logical_not(wavelen < high_freq_wavelen).logical_and(at::logical_not(wavelen > low_freq_wavelen));
  return at::where(is_medium, smoothed, scaled);
}

std::pair<at::Tensor, at::Tensor> RopeCosSin(const at::Tensor& inv_freq, const at::Tensor& position_ids) {
  at::Tensor freqs = position_ids.to(at::kFloat).unsqueeze(-1) * inv_freq.to(position_ids.device()).view({1, 1, -1});
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

at::Tensor ApplyRopeTensorOps(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.slice(-1, 0, half);
  at::Tensor x2 = x.slice(-1, half);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  at::Tensor c = cos.unsqueeze(1).to(x.scalar_type());
  at::Tensor s = sin.unsqueeze(1).to(x.scalar_type());
  return x * c + rotated * s;
}

namespace {

// One pass over x [batch, heads, seq, dim] (any strides with a unit last stride) into a
// contiguous out, with cos/sin [batch, seq, dim] (unit last stride). Forward:
//   out[i]     = x[i] c[i] - x[i + h] s[i]
//   out[i + h] = x[i + h] c[i + h] + x[i] s[i + h]
// which is x * c + cat(-x2, x1) * s rounded the same way ((-a) b = -(a b) and p + (-q) = p - q
// exactly; rope.cc is built without FMA contraction). The gradient (`inverse`) is the
// transpose of that map:
//   dx[i]     = dy[i] c[i] + dy[i + h] s[i + h]
//   dx[i + h] = dy[i + h] c[i + h] - dy[i] s[i]
// T is float or bf16 bits. In bf16, R() rounds to bf16 wherever libtorch's bf16 tensor ops
// store (cos and sin cast to bf16, each product, the sum), so the result is theirs bit for bit
// (a product of two bf16 values is exact in float); in float R() is the identity.
template <typename T>
POLYTUNE_ALWAYS_INLINE float R(float v) {
  return std::is_same_v<T, uint16_t> ? RoundToBf16(v) : v;
}

template <typename T>
POLYTUNE_ALWAYS_INLINE void RotateRowImpl(const T* xr, const float* c, const float* s, T* o, int64_t half,
                                          bool inverse) {
  if (!inverse) {
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = LoadAsFloat(xr, i), x2 = LoadAsFloat(xr, i + half);
      StoreFromFloat(o, i, R<T>(x1 * R<T>(c[i])) - R<T>(x2 * R<T>(s[i])));
      StoreFromFloat(o, i + half, R<T>(x2 * R<T>(c[i + half])) + R<T>(x1 * R<T>(s[i + half])));
    }
  } else {
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = LoadAsFloat(xr, i), x2 = LoadAsFloat(xr, i + half);
      StoreFromFloat(o, i, R<T>(x1 * R<T>(c[i])) + R<T>(x2 * R<T>(s[i + half])));
      StoreFromFloat(o, i + half, R<T>(x2 * R<T>(c[i + half])) - R<T>(x1 * R<T>(s[i])));
    }
  }
}

// -ffp-contract=off (CMakeLists.txt) holds in every variant.
POLYTUNE_VECTOR_KERNEL(RotateRow,
                       (const float* xr, const float* c, const float* s, float* o, int64_t half, bool inverse),
                       (xr, c, s, o, half, inverse))
POLYTUNE_VECTOR_KERNEL(RotateRow,
                       (const uint16_t* xr, const float* c, const float* s, uint16_t* o, int64_t half, bool inverse),
                       (xr, c, s, o, half, inverse))

template <typename T>
void RotateRows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool inverse, at::Tensor& out) {
  const int64_t batch = x.size(0), heads = x.size(1), seq = x.size(2), dim = x.size(3), half = dim / 2;
  const T* xp = Elements<T>(x);
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  T* op = Elements<T>(out);
  const int64_t xs0 = x.stride(0), xs1 = x.stride(1), xs2 = x.stride(2);
  const int64_t cs0 = cos.stride(0), cs1 = cos.stride(1), ss0 = sin.stride(0), ss1 = sin.stride(1);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, dim));
  at::parallel_for(0, batch * heads * seq, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t t = row % seq, bh = row / seq, h = bh % heads, b = bh / heads;
      const T* xr = xp + b * xs0 + h * xs1 + t * xs2;
      const float* c = cp + b * cs0 + t * cs1;
      const float* s = sp + b * ss0 + t * ss1;
      RotateRow(xr, c, s, op + row * dim, half, inverse);
    }
  });
}

// cos/sin as [batch, seq, dim] fp32 views with a unit last stride, broadcast over x's batch.
at::Tensor RopeTable(const at::Tensor& t, const at::Tensor& x) {
  return t.to(at::kFloat).contiguous().expand({x.size(0), x.size(2), x.size(3)});
}

at::Tensor Rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool inverse) {
  const at::Tensor xs = x.stride(3) == 1 ? x : x.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  if (x.scalar_type() == at::kFloat)
    RotateRows<float>(xs, RopeTable(cos, x), RopeTable(sin, x), inverse, out);
  else
    RotateRows<uint16_t>(xs, RopeTable(cos, x), RopeTable(sin, x), inverse, out);
  return out;
}

class RopeFunction : public torch::autograd::Function<RopeFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                            const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return Rotate(x, cos, sin, /*inverse=*/false);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    return {Rotate(grads[0], saved[0], saved[1], /*inverse=*/true), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  // The fused pass on CPU in fp32: one read and one contiguous write instead of a slice, a
  // negation, a concatenation, two products and a sum each way (and the copy attention's
  // reshape made of the transposed result).
  if (x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) && x.dim() == 4 &&
      x.size(3) % 2 == 0 && !cos.requires_grad() && !sin.requires_grad())
    return RopeFunction::apply(x, cos, sin);
  return ApplyRopeTensorOps(x, cos, sin);
}

}  // namespace polytune::engine
