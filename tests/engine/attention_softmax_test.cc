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

namespace polytune::engine {
namespace {

// softmax(scale * scores + causal mask) by tensor ops, the scaled scores rounded to the dtype
// first (the separate scaling op the row kernel replaces).
at::Tensor CausalSoftmaxTensorOps(const at::Tensor& scores, double scale, int64_t first_row) {
  const int64_t rows = scores.size(1), keys = scores.size(2);
  const at::Tensor query = at::arange(first_row, first_row + rows).unsqueeze(1), key = at::arange(keys).unsqueeze(0);
  const at::Tensor scaled = (scores * scale).masked_fill(key.gt(query), -std::numeric_limits<float>::infinity());
  return at::softmax(scaled.to(at::kFloat), -1).to(scores.scalar_type());
}

TEST(AttentionSoftmax, CausalRowsEqualTheScaledMaskedSoftmax) {
  at::manual_seed(5);
  // 75 keys: rows of lengths 36..75, no multiple of the 16 lanes; first_row 0 sees 1..40 keys.
  for (int64_t first_row : {int64_t{35}, int64_t{0}}) {
    const at::Tensor scores = at::randn({3, 40, 75}) * 6;
    SCOPED_TRACE(testing::Message() << "first_row " << first_row);
    const at::Tensor fp32 = CausalSoftmaxRows(scores, 0.125, first_row);
    EXPECT_TRUE(fp32.allclose(CausalSoftmaxTensorOps(scores, 0.125, first_row), 1e-6, 1e-7));
    const at::Tensor bf16 = scores.to(at::kBFloat16);
    const at::Tensor ours = CausalSoftmaxRows(bf16, 0.125, first_row),
                     reference = CausalSoftmaxTensorOps(bf16, 0.125, first_row);
    ASSERT_EQ(ours.scalar_type(), at::kBFloat16);
    // The same fp32 softmax up to the exp's last bits, so the bf16 results differ at most where
    // those bits decide the rounding: by one ulp (2^-8 relative), and seldom.
    const at::Tensor diff = (ours.to(at::kFloat) - reference.to(at::kFloat)).abs();
    EXPECT_TRUE(diff.le(reference.to(at::kFloat).abs() / 128 + 1e-30).all().item<bool>()) << diff.max();
    EXPECT_GT(ours.eq(reference).to(at::kFloat).mean().item<float>(), 0.98f);
    for (int64_t r = 0; r < 40; ++r) {
      const int64_t seen = first_row + r + 1;
      if (seen < 75) EXPECT_TRUE(ours.select(1, r).slice(1, seen).eq(0).all().item<bool>()) << "row " << r;
      EXPECT_NEAR(fp32.select(1, r).sum(-1).max().item<float>(), 1.0f, 1e-5) << "row " << r;
    }
  }
  EXPECT_THROW(CausalSoftmaxRows(at::randn({2, 8, 8}), 1.0, 1), c10::Error) << "rows beyond the keys";
}

TEST(AttentionSoftmax, BackwardRowsAreTheScaledExactGradient) {
  at::manual_seed(6);
  const at::Tensor p = at::softmax(at::randn({4, 9, 75}) * 3, -1), g = at::randn({4, 9, 75});
  const at::Tensor pd = p.to(at::kDouble), gd = g.to(at::kDouble);
  const at::Tensor exact = 0.25 * pd * (gd - (gd * pd).sum(-1, true));
  EXPECT_TRUE(SoftmaxBackwardRows(g, p, 0.25).to(at::kDouble).allclose(exact, 1e-5, 1e-7));
  // bf16: against exact from the same bf16 inputs, within a few bf16 ulps of the largest element.
  const at::Tensor pb = p.to(at::kBFloat16), gb = g.to(at::kBFloat16);
  const at::Tensor pbd = pb.to(at::kDouble), gbd = gb.to(at::kDouble);
  const at::Tensor exact_b = 0.25 * pbd * (gbd - (gbd * pbd).sum(-1, true));
  const at::Tensor ours = SoftmaxBackwardRows(gb, pb, 0.25);
  ASSERT_EQ(ours.scalar_type(), at::kBFloat16);
  EXPECT_LT((ours.to(at::kDouble) - exact_b).abs().max().item<double>(), exact_b.abs().max().item<double>() / 128);
}

}  // namespace
}  // namespace polytune::engine
