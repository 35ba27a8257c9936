// Blocked causal attention against plain full attention (every score computed, the upper
// triangle masked): outputs and gradients agree within fp32 rounding.
#include "polytune/engine/blocked_attention.h"

#include <gtest/gtest.h>

#include <limits>

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

}  // namespace
}  // namespace polytune::engine
