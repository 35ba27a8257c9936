// The batch-split CPU batched matmul against at::bmm: values and both gradients within fp32
// rounding (each item is one GEMM either way; only the threads that run it differ), for plain
// and transposed operands as attention passes them.
#include "polytune/engine/batched_matmul.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "polytune/engine/cpu_threads.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

void ExpectSameAsBmm(const at::Tensor& a0, const at::Tensor& b0) {
  at::Tensor a1 = a0.detach().clone().requires_grad_(true), b1 = b0.detach().clone().requires_grad_(true);
  at::Tensor a2 = a0.detach().clone().requires_grad_(true), b2 = b0.detach().clone().requires_grad_(true);
  // The transposed layout attention uses for keys: [n, p, k] storage read as [n, k, p].
  at::Tensor out = BatchedMatmul(a1, b1.transpose(1, 2));
  at::Tensor ref = at::bmm(a2, b2.transpose(1, 2));
  ASSERT_EQ(out.sizes(), ref.sizes());
  EXPECT_LT(testing::RelativeMaxError(out, ref), 1e-6);
  at::Tensor upstream = at::randn(ref.sizes());
  out.backward(upstream);
  ref.backward(upstream);
  EXPECT_LT(testing::RelativeMaxError(a1.grad(), a2.grad()), 1e-6);
  EXPECT_LT(testing::RelativeMaxError(b1.grad(), b2.grad()), 1e-6);
}

TEST(BatchedMatmul, EqualsBmmWithGradients) {
  at::manual_seed(21);
  ExpectSameAsBmm(at::randn({32, 128, 64}), at::randn({32, 384, 64}));  // scores of one query block
  ExpectSameAsBmm(at::randn({5, 7, 3}), at::randn({5, 11, 3}));
  // probs @ v: b not transposed.
  at::Tensor p = at::randn({6, 9, 20}, at::TensorOptions().requires_grad(true));
  at::Tensor v = at::randn({6, 20, 8}, at::TensorOptions().requires_grad(true));
  EXPECT_LT(testing::RelativeMaxError(BatchedMatmul(p, v), at::bmm(p, v)), 1e-6);
}

// bf16 on CPU: attention's operands (a query block, a key prefix read transposed, a value
// prefix) are re-laid out for oneDNN before libtorch's bmm; values and gradients stay those of
// at::bmm on the same bf16 inputs up to the GEMM's own bf16 rounding of each result.
TEST(BatchedMatmul, Bf16AttentionOperandsMatchBmm) {
  at::manual_seed(22);
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16);
  at::Tensor q = at::randn({8, 512, 64}, bf16), k = at::randn({8, 512, 64}, bf16), v = at::randn({8, 512, 64}, bf16);
  for (int64_t end : {256, 512}) {
    at::Tensor q1 = q.clone().requires_grad_(true), k1 = k.clone().requires_grad_(true);
    at::Tensor q2 = q.clone().requires_grad_(true), k2 = k.clone().requires_grad_(true);
    at::Tensor out = BatchedMatmul(q1.narrow(1, end - 128, 128), k1.narrow(1, 0, end).transpose(1, 2));
    at::Tensor ref = at::bmm(q2.narrow(1, end - 128, 128), k2.narrow(1, 0, end).transpose(1, 2));
    at::Tensor exact =
        at::bmm(q.narrow(1, end - 128, 128).to(at::kFloat), k.narrow(1, 0, end).to(at::kFloat).transpose(1, 2));
    ASSERT_EQ(out.sizes(), ref.sizes());
    // One rounding to bf16 (2^-8 relative) of an fp32-accumulated dot product, either way.
    EXPECT_LT(testing::RelativeMaxError(out.to(at::kFloat), exact), 4e-3) << "end " << end;
    EXPECT_LT(testing::RelativeMaxError(ref.to(at::kFloat), exact), 4e-3) << "end " << end;
    at::Tensor upstream = at::randn(ref.sizes(), bf16);
    out.backward(upstream);
    ref.backward(upstream);
    EXPECT_LT(testing::RelativeMaxError(q1.grad().to(at::kFloat), q2.grad().to(at::kFloat)), 8e-3);
    EXPECT_LT(testing::RelativeMaxError(k1.grad().to(at::kFloat), k2.grad().to(at::kFloat)), 8e-3);
    at::Tensor p = at::randn({8, 128, end}, bf16);
    at::Tensor pv = BatchedMatmul(p, v.narrow(1, 0, end));
    EXPECT_LT(
        testing::RelativeMaxError(pv.to(at::kFloat), at::bmm(p.to(at::kFloat), v.narrow(1, 0, end).to(at::kFloat))),
        4e-3);
  }
}

TEST(BatchedMatmul, SplitsBatchesWhereOpenBlasRunsInTorchsThreads) {
  at::Tensor a = at::randn({4, 8, 8}), b = at::randn({4, 8, 8});
  const int threading = OpenBlasThreading();
  if (threading == 1) {
    EXPECT_FALSE(BatchedMatmulSplitsBatches(a, b)) << "OpenBLAS's pthread build: at::bmm";
    GTEST_SKIP() << "OpenBLAS's pthread build is loaded (install libopenblas0-openmp): BatchedMatmul is at::bmm";
  }
  if (threading < 0) GTEST_SKIP() << "this process does not link OpenBLAS";
  EXPECT_TRUE(BatchedMatmulSplitsBatches(a, b));
  EXPECT_FALSE(BatchedMatmulSplitsBatches(a.to(at::kDouble), b.to(at::kDouble)));
  EXPECT_FALSE(BatchedMatmulSplitsBatches(a, at::randn({4, 7, 8})));  // shapes do not chain
}

}  // namespace
}  // namespace polytune::engine
