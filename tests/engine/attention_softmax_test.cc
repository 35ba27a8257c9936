// Attention's softmax: the bf16 CPU function against the cast-back fp32 path it replaces and
// against exact (float64) values.
#include "polytune/engine/attention_softmax.h"

#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

#include <limits>

namespace polytune::engine {
namespace {

TEST(AttentionSoftmax, Bf16ForwardIsTheCastBackPathBitForBitAndBackwardIsNearExact) {
  at::manual_seed(12);
  // Causal-style rows: a masked tail of -inf, row lengths that are no multiple of 16 lanes.
  at::Tensor scores0 = at::randn({6, 40, 75}) * 4;
  scores0.slice(2, 60).fill_(-std::numeric_limits<float>::infinity());
  scores0 = scores0.to(at::kBFloat16);
  at::Tensor upstream = at::randn({6, 40, 75}).to(at::kBFloat16);
  at::Tensor a = scores0.clone().requires_grad_(true), b = scores0.clone().requires_grad_(true);
  at::Tensor fused = AttentionSoftmax(a), reference = AttentionSoftmaxTensorOps(b);
  ASSERT_NE(fused.grad_fn()->name(), reference.grad_fn()->name()) << "the bf16 function must have run";
  EXPECT_TRUE(fused.equal(reference));
  fused.backward(upstream);
  reference.backward(upstream);
  ASSERT_EQ(a.grad().scalar_type(), at::kBFloat16);
  // Exact: p (g - sum(g p)) with p the exact softmax of the bf16 scores.
  const at::Tensor p = at::softmax(scores0.to(at::kDouble), -1), g = upstream.to(at::kDouble);
  const at::Tensor exact = p * (g - (g * p).sum(-1, true));
  const double scale = exact.abs().max().item<double>();
  const double ours = (a.grad().to(at::kDouble) - exact).abs().max().item<double>();
  const double theirs = (b.grad().to(at::kDouble) - exact).abs().max().item<double>();
  EXPECT_LT(ours, scale / 64) << "a few bf16 ulps of the largest element; the cast-back path: " << theirs;
  // Using the bf16-rounded p costs at most about one more rounding than the fp32 p does.
  EXPECT_LT(ours, 2 * theirs + scale / 256) << ours << " vs " << theirs;
  EXPECT_TRUE(a.grad().slice(2, 60).eq(0).all().item<bool>()) << "masked scores get no gradient";
}

TEST(AttentionSoftmax, OtherDtypesTakeTheCastBackPath) {
  at::Tensor s = at::randn({3, 5});
  EXPECT_TRUE(AttentionSoftmax(s).equal(AttentionSoftmaxTensorOps(s)));
  at::Tensor d = at::randn({3, 5}, at::kDouble);
  EXPECT_TRUE(AttentionSoftmax(d).equal(at::softmax(d, -1)));
}

}  // namespace
}  // namespace polytune::engine
