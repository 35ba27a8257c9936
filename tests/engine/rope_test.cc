// The fused CPU RoPE pass against the generic tensor ops it replaces: the same bits, forward
// and backward, for the layouts the model feeds it (a transposed view of a projection's output,
// a contiguous tensor, cos/sin shared across the batch).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "polytune/engine/rope.h"

namespace polytune::engine {
namespace {

struct Case {
  at::Tensor x;  // [batch, heads, seq, dim]
  at::Tensor cos, sin;
};

Case MakeCase(int64_t batch, int64_t heads, int64_t seq, int64_t dim, bool transposed, int64_t table_batch) {
  ModelConfig config;
  config.head_dim = dim;
  config.rope_theta = 10000;
  at::Tensor positions = at::arange(3, 3 + seq, at::kLong).unsqueeze(0).repeat({table_batch, 1});
  positions.add_(at::arange(table_batch, at::kLong).unsqueeze(1) * 7);  // rows differ
  auto [cos, sin] = RopeCosSin(RopeInverseFrequencies(config), positions);
  at::Tensor x = transposed ? at::randn({batch, seq, heads, dim}).transpose(1, 2) : at::randn({batch, heads, seq, dim});
  return {x, cos, sin};
}

void ExpectSameAsTensorOps(const Case& c) {
  at::Tensor x1 = c.x.detach().clone(at::MemoryFormat::Preserve).requires_grad_(true);
  at::Tensor x2 = c.x.detach().clone(at::MemoryFormat::Preserve).requires_grad_(true);
  at::Tensor fused = ApplyRope(x1, c.cos, c.sin);
  at::Tensor reference = ApplyRopeTensorOps(x2, c.cos, c.sin);
  EXPECT_TRUE(fused.is_contiguous());
  ASSERT_EQ(fused.sizes(), reference.sizes());
  EXPECT_TRUE(at::equal(fused, reference)) << "max difference " << (fused - reference).abs().max().item<float>();
  at::Tensor upstream = at::randn(fused.sizes()).to(fused.scalar_type());
  fused.backward(upstream);
  reference.backward(upstream);
  EXPECT_TRUE(at::equal(x1.grad(), x2.grad()))
      << "max gradient difference " << (x1.grad() - x2.grad()).abs().max().item<float>();
  // Not a no-op: the rotation moved the values.
  EXPECT_GT((fused - c.x).abs().max().item<float>(), 0.1f);
}

TEST(Rope, FusedCpuPassIsBitIdenticalToTheTensorOpsWithGradients) {
  at::manual_seed(7);
  ExpectSameAsTensorOps(MakeCase(2, 3, 11, 16, /*transposed=*/true, /*table_batch=*/2));
  ExpectSameAsTensorOps(MakeCase(2, 3, 11, 16, /*transposed=*/false, /*table_batch=*/2));
  ExpectSameAsTensorOps(MakeCase(3, 4, 9, 64, /*transposed=*/true, /*table_batch=*/1));  // table broadcast
  ExpectSameAsTensorOps(MakeCase(1, 2, 130, 128, /*transposed=*/true, /*table_batch=*/1));
}

// bf16 activations (training.compute_dtype: bfloat16): the fused pass rounds where the bf16
// tensor ops store, so it is still their bits exactly, both ways.
TEST(Rope, FusedCpuPassInBf16IsBitIdenticalToTheBf16TensorOps) {
  at::manual_seed(9);
  for (bool transposed : {true, false}) {
    Case c = MakeCase(2, 3, 37, 64, transposed, /*table_batch=*/2);
    c.x = c.x.to(at::kBFloat16);
    ExpectSameAsTensorOps(c);
  }
  Case c = MakeCase(3, 4, 9, 64, /*transposed=*/true, /*table_batch=*/1);
  c.x = (c.x * 100).to(at::kBFloat16);  // large values: every rounding step matters
  ExpectSameAsTensorOps(c);
}

TEST(Rope, WithoutGradientTheFusedPassStillRotates) {
  at::manual_seed(8);
  Case c = MakeCase(2, 2, 5, 8, /*transposed=*/true, 2);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(ApplyRope(c.x, c.cos, c.sin), ApplyRopeTensorOps(c.x, c.cos, c.sin)));
}

}  // namespace
}  // namespace polytune::engine
