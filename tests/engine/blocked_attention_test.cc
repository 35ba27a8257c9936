// Blocked causal attention against plain full attention (every score computed, the upper
// triangle masked): outputs and gradients agree within fp32 rounding; in bf16 no less accurate
// than the bf16 tensor ops Hugging Face's eager attention runs.
#include "polytune/engine/blocked_attention.h"

#include <torch/csrc/autograd/function.h>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace polytune::engine {
namespace {

at::Tensor CausalMaskReference(int64_t seq) {
  return at::zeros({seq, seq})
      .masked_fill(at::ones({seq, seq}, at::kBool).triu(1), -std::numeric_limits<float>::infinity());
}

TEST(BlockedAttention, EqualsFullCausalAttentionWithGradients) {
  at::manual_seed(3);
  // 300 = two whole blocks and a partial one; 512 = four whole blocks.
  for (int64_t seq : {2 * kAttentionBlock, int64_t{300}, int64_t{512}}) {
    SCOPED_TRACE(testing::Message() << "seq " << seq);
    const int64_t batch = 2, heads = 3, dim = 16;
    const double scale = 0.25;
    at::Tensor q = at::randn({batch, heads, seq, dim}).set_requires_grad(true);
    at::Tensor k = at::randn({batch, heads, seq, dim}).set_requires_grad(true);
    at::Tensor v = at::randn({batch, heads, seq, dim}).set_requires_grad(true);
    const at::Tensor mask = CausalMaskReference(seq);
    at::Tensor blocked = BlockedCausalAttention(q, k, v, mask, scale);
    ASSERT_EQ(blocked.sizes(), (std::vector<int64_t>{batch * heads, seq, dim}));

    at::Tensor q_ref = q.detach().clone().set_requires_grad(true);
    at::Tensor k_ref = k.detach().clone().set_requires_grad(true);
    at::Tensor v_ref = v.detach().clone().set_requires_grad(true);
    at::Tensor full = at::matmul(at::softmax(at::matmul(q_ref, k_ref.transpose(-1, -2)) * scale + mask, -1), v_ref)
                          .reshape({batch * heads, seq, dim});
    EXPECT_TRUE(blocked.allclose(full, 1e-5, 1e-6)) << (blocked - full).abs().max().item<float>();

    const at::Tensor grad = at::randn_like(full);
    blocked.backward(grad);
    full.backward(grad);
    EXPECT_TRUE(q.grad().allclose(q_ref.grad(), 1e-4, 1e-5)) << (q.grad() - q_ref.grad()).abs().max().item<float>();
    EXPECT_TRUE(k.grad().allclose(k_ref.grad(), 1e-4, 1e-5)) << (k.grad() - k_ref.grad()).abs().max().item<float>();
    EXPECT_TRUE(v.grad().allclose(v_ref.grad(), 1e-4, 1e-5)) << (v.grad() - v_ref.grad()).abs().max().item<float>();
  }
}

// Hugging Face's eager attention in the inputs' dtype: bf16 products, scaled and masked in bf16,
// softmax in fp32 cast back. Differentiable; [batch * heads, seq, dim].
at::Tensor EagerAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  const int64_t seq = q.size(2);
  const at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) * scale + CausalMaskReference(seq).to(q.scalar_type());
  const at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  return at::matmul(probs, v).reshape({q.size(0) * q.size(1), seq, q.size(3)});
}

TEST(BlockedAttention, Bf16IsNoLessAccurateThanTheEagerBf16Ops) {
  at::manual_seed(4);
  for (int64_t seq : {int64_t{300}, int64_t{512}}) {
    SCOPED_TRACE(testing::Message() << "seq " << seq);
    const int64_t batch = 2, heads = 2, dim = 32;
    const double scale = 1.0 / std::sqrt(static_cast<double>(dim));
    // Inputs exact in bf16, so the float64 reference sees the same values.
    std::vector<at::Tensor> in;
    for (int i = 0; i < 3; ++i) in.push_back(at::randn({batch, heads, seq, dim}).to(at::kBFloat16));
    const at::Tensor grad = at::randn({batch * heads, seq, dim}).to(at::kBFloat16);
    auto run = [&](at::ScalarType dtype, bool blocked) {
      std::vector<at::Tensor> x;
      for (const auto& t : in) x.push_back(t.to(dtype).set_requires_grad(true));
      at::Tensor out = blocked ? BlockedCausalAttention(x[0], x[1], x[2], CausalMaskReference(seq).to(dtype), scale)
                               : EagerAttention(x[0], x[1], x[2], scale);
      if (blocked)
        EXPECT_NE(out.grad_fn()->name().find("BlockedCausalAttentionFunction"), std::string::npos)
            << "the written-out CPU node must have run: " << out.grad_fn()->name();
      out.backward(grad.to(dtype));
      std::vector<at::Tensor> r{out.detach().to(at::kDouble)};
      for (const auto& t : x) r.push_back(t.grad().to(at::kDouble));
      return r;
    };
    const auto exact = run(at::kDouble, false), ours = run(at::kBFloat16, true), eager = run(at::kBFloat16, false);
    const char* names[] = {"output", "q grad", "k grad", "v grad"};
    for (size_t i = 0; i < exact.size(); ++i) {
      const double size = exact[i].abs().max().item<double>();
      const double our_err = (ours[i] - exact[i]).abs().max().item<double>();
      const double eager_err = (eager[i] - exact[i]).abs().max().item<double>();
      EXPECT_LT(our_err, size / 32) << names[i];
      EXPECT_LT(our_err, 1.5 * eager_err + size / 512) << names[i] << ": ours " << our_err << ", eager " << eager_err;
    }
  }
}

}  // namespace
}  // namespace polytune::engine
