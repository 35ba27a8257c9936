// The fused CPU RMSNorm against the tensor ops (Hugging Face's LlamaRMSNorm), values and
// gradients, in fp32 and bf16.
#include "polytune/engine/rms_norm.h"

#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

namespace polytune::engine {
namespace {

struct Result {
  at::Tensor y, dx;
};

Result NormAndBackward(bool fused, const at::Tensor& x0, const at::Tensor& w, const at::Tensor& dy) {
  at::Tensor x = x0.clone().requires_grad_(true);
  at::Tensor y = fused ? RmsNorm(x, w, 1e-5) : RmsNormTensorOps(x, w, 1e-5);
  y.backward(dy);
  return {y.detach(), x.grad()};
}

TEST(RmsNorm, FusedEqualsTheTensorOpsWithinRounding) {
  at::manual_seed(21);
  // Rows of several scales; a width that is no multiple of the 16 lanes; 3-D like [batch, seq, hidden].
  at::Tensor x0 = at::randn({3, 50, 200}) * at::rand({3, 50, 1}) * 10;
  at::Tensor w0 = at::rand({200}) + 0.5;
  at::Tensor dy0 = at::randn({3, 50, 200});
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor x = x0.to(dtype), w = w0.to(dtype), dy = dy0.to(dtype);
    {
      at::Tensor probe = x.clone().requires_grad_(true);
      at::Tensor y = RmsNorm(probe, w, 1e-5);
      ASSERT_NE(y.grad_fn()->name(), RmsNormTensorOps(probe, w, 1e-5).grad_fn()->name()) << "the fused path ran";
    }
    const Result fused = NormAndBackward(true, x, w, dy), ops = NormAndBackward(false, x, w, dy);
    ASSERT_EQ(fused.dx.scalar_type(), dtype);
    // fp32: a few float ulps (the sum of squares in another order, 1/sqrt against rsqrt).
    // bf16: the tensor ops round the same values at the same places, so most elements are
    // bit-equal and the rest one bf16 ulp (2^-8) apart; the gradient, computed in fp32 and
    // rounded once here but through bf16 intermediates there, within a few bf16 ulps.
    const double y_tol = dtype == at::kFloat ? 1e-6 : 1.0 / 128, dx_tol = dtype == at::kFloat ? 1e-5 : 3e-2;
    at::Tensor yf = fused.y.to(at::kDouble), yo = ops.y.to(at::kDouble);
    EXPECT_TRUE((yf - yo).abs().le(yo.abs() * y_tol + 1e-30).all().item<bool>()) << dtype;
    if (dtype == at::kBFloat16) EXPECT_GT(yf.eq(yo).to(at::kDouble).mean().item<double>(), 0.98);
    // The exact gradient in float64 from the same inputs bounds both.
    at::Tensor xd = x.to(at::kDouble).requires_grad_(true);
    RmsNormTensorOps(xd, w.to(at::kDouble), 1e-5).backward(dy.to(at::kDouble));
    const double scale = xd.grad().abs().max().item<double>();
    const double ours = (fused.dx.to(at::kDouble) - xd.grad()).abs().max().item<double>();
    const double theirs = (ops.dx.to(at::kDouble) - xd.grad()).abs().max().item<double>();
    EXPECT_LT(ours, dx_tol * scale) << dtype << " (tensor ops: " << theirs / scale << " of the scale)";
    EXPECT_LE(ours, 1.5 * theirs + 1e-6 * scale) << dtype << ": no less accurate than the tensor ops";
  }
}

TEST(RmsNorm, ARowsResultDoesNotDependOnItsBatch) {
  at::manual_seed(22);
  at::Tensor x = at::randn({64, 96}), w = at::rand({96});
  at::Tensor all = RmsNorm(x, w, 1e-6);
  EXPECT_TRUE(all[17].equal(RmsNorm(x.slice(0, 17, 18), w, 1e-6)[0]));
  // A weight that needs a gradient, or float64, takes the tensor ops.
  at::Tensor d = at::randn({4, 8}, at::kDouble), wd = at::rand({8}, at::kDouble);
  EXPECT_TRUE(RmsNorm(d, wd, 1e-6).equal(RmsNormTensorOps(d, wd, 1e-6)));
}

}  // namespace
}  // namespace polytune::engine
