// The fused CPU SwiGLU against silu(gate) * up through tensor ops, values and gradients.
#include "polytune/engine/swiglu.h"

#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

#include <cmath>
#include <limits>

namespace polytune::engine {
namespace {

// Largest |a - b| / (|b| + tiny): a few float ulps (1.2e-7 each) are expected.
double MaxRelError(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs() / (b.abs() + 1e-30)).max().item<double>();
}

TEST(SwiGlu, ValuesAndGradientsMatchTheTensorOpsWithinAFewUlp) {
  at::manual_seed(4);
  // Every exponent range silu sees, through the clamped edges of the exp (|x| > 87).
  at::Tensor gate0 = at::cat({at::randn({4000}) * 4, at::linspace(-100, 100, 2001), at::randn({3000}) * 1e-3});
  at::Tensor up0 = at::randn(gate0.sizes()) * 3;
  at::Tensor dy = at::randn(gate0.sizes());
  at::Tensor g1 = gate0.clone().requires_grad_(), u1 = up0.clone().requires_grad_();
  at::Tensor g2 = gate0.clone().requires_grad_(), u2 = up0.clone().requires_grad_();
  at::Tensor fused = SwiGlu(g1, u1), reference = SwiGluTensorOps(g2, u2);
  ASSERT_NE(fused.grad_fn()->name(), reference.grad_fn()->name()) << "the fused path must have run";
  // Where the product is not vanishingly small (silu(-100) = -4e-42 is a denormal either way).
  at::Tensor normal = reference.abs() > 1e-30;
  EXPECT_LT(MaxRelError(fused.masked_select(normal), reference.masked_select(normal)), 5e-7);
  EXPECT_LT((fused - reference).abs().max().item<double>(), 1e-6 * reference.abs().max().item<double>());
  fused.backward(dy);
  reference.backward(dy);
  EXPECT_LT(MaxRelError(u1.grad().masked_select(normal), u2.grad().masked_select(normal)), 5e-7);
  // d silu / dg = s (1 + g (1 - s)) cancels near g = -1.28 (its zero), so compare absolutely
  // there, relative to the gradient's scale.
  EXPECT_LT((g1.grad() - g2.grad()).abs().max().item<double>(), 2e-6 * g2.grad().abs().max().item<double>());
  // Elsewhere relative, for |g| < 16: beyond, 1 - s is a few ulps of 1 and g (1 - s)
  // multiplies either side's last-ulp difference in s by g.
  at::Tensor away = ((gate0 + 1.2785).abs() > 0.05).logical_and(gate0.abs() < 16);
  EXPECT_LT(MaxRelError(g1.grad().masked_select(away), g2.grad().masked_select(away)), 2e-6);
}

// bf16 (training.compute_dtype: bfloat16): computed in float, rounded to bf16 where libtorch's
// bf16 ops store a tensor (silu(g); dy * up before silu's backward). Against the exact values
// (float64 from the same bf16 inputs) that is within two bf16 roundings (2^-7 relative), and
// on average no further off than libtorch's own bf16 silu(gate) * up (whose silu rounds inside
// too, so the two are not bit-equal).
TEST(SwiGlu, Bf16IsWithinTwoRoundingsOfExactAndNoWorseThanTheTensorOps) {
  at::manual_seed(6);
  at::Tensor gate0 = at::cat({at::randn({40000}) * 4, at::linspace(-100, 100, 2001)}).to(at::kBFloat16);
  at::Tensor up0 = (at::randn(gate0.sizes()) * 3).to(at::kBFloat16);
  at::Tensor dy = at::randn(gate0.sizes()).to(at::kBFloat16);
  at::Tensor g1 = gate0.clone().requires_grad_(), u1 = up0.clone().requires_grad_();
  at::Tensor g2 = gate0.clone().requires_grad_(), u2 = up0.clone().requires_grad_();
  at::Tensor fused = SwiGlu(g1, u1), tensor_ops = SwiGluTensorOps(g2, u2);
  ASSERT_NE(fused.grad_fn()->name(), tensor_ops.grad_fn()->name()) << "the fused path must have run";
  ASSERT_EQ(fused.scalar_type(), at::kBFloat16);
  fused.backward(dy);
  tensor_ops.backward(dy);
  ASSERT_EQ(g1.grad().scalar_type(), at::kBFloat16);
  // Exact, in float64: y = silu(g) up, dup = dy silu(g), dg = dy up s (1 + g (1 - s)).
  const at::Tensor g = gate0.to(at::kDouble), u = up0.to(at::kDouble), d = dy.to(at::kDouble);
  const at::Tensor s = at::sigmoid(g);
  const std::tuple<const char*, at::Tensor, at::Tensor, at::Tensor> cases[] = {
      {"y", fused, tensor_ops, g * s * u},
      {"d up", u1.grad(), u2.grad(), d * g * s},
      {"d gate", g1.grad(), g2.grad(), d * u * s * (1 + g * (1 - s))}};
  for (const auto& [name, ours, theirs, exact] : cases) {
    at::Tensor err = (ours.detach().to(at::kDouble) - exact).abs();
    at::Tensor their_err = (theirs.detach().to(at::kDouble) - exact).abs();
    // Two roundings relative to the element, or to the tensor's scale where it is tiny (and
    // for silu's gradient, which passes through zero near g = -1.28 by cancellation).
    at::Tensor bound = exact.abs() * (2.0 / 128) + 2e-3 * exact.abs().max();
    EXPECT_TRUE(err.le(bound).all().item<bool>()) << name << ": max error " << err.max().item<double>();
    EXPECT_LE(err.mean().item<double>(), 1.05 * their_err.mean().item<double>()) << name;
  }
}

TEST(SwiGlu, NonFiniteInputsStayNonFiniteAndOtherShapesFallBack) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  at::Tensor out = SwiGlu(at::tensor({nan, inf, 1.0f}), at::tensor({1.0f, 1.0f, nan}));
  EXPECT_TRUE(std::isnan(out[0].item<float>()));
  EXPECT_TRUE(std::isinf(out[1].item<float>()));
  EXPECT_TRUE(std::isnan(out[2].item<float>()));
  // float64 (and broadcasting) take the tensor ops.
  at::Tensor g = at::randn({3, 4}, at::kDouble), u = at::randn({4}, at::kDouble);
  EXPECT_TRUE(SwiGlu(g, u).equal(at::silu(g) * u));
}

}  // namespace
}  // namespace polytune::engine
