// LoRA's fp32 CPU path (lora_cpu_kernels.h, reached through LoraAdapter::AddTo) against the
// adapter's definition computed in double with libtorch: the output, and the gradients of x,
// A and B, with and without dropout, for ranks that take each register tiling (r 16, 32, 64)
// and one that is padded (r 8), row and column counts that leave partial tiles, and enough
// rows to split across threads.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/function.h>

#include "polytune/engine/lora.h"

namespace polytune::engine {
namespace {

// lora_cpu's kernels need AVX-512F; elsewhere AddTo takes BLAS, which these tests check too.
bool KernelsExpected() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

struct Shape {
  int64_t rows, in, out, r;
  double dropout;
};

struct Results {
  at::Tensor y, grad_x, grad_a, grad_b;
  std::string node;  // the output's autograd node: which path ran
};

LoraAdapter MakeAdapter(const Shape& s) {
  LoraSettings settings;
  settings.r = s.r;
  settings.alpha = 2 * s.r;
  settings.dropout = s.dropout;
  LoraAdapter lora = LoraAdapter::Create(s.in, s.out, settings, 11, at::kCPU);
  at::NoGradGuard no_grad;
  lora.b.normal_(0, 0.3);  // PEFT starts B at zero; every gradient is tested here
  return lora;
}

// x [rows, in], the base output and the gradient arriving at the output [rows, out].
std::tuple<at::Tensor, at::Tensor, at::Tensor> RandomInputs(const Shape& s) {
  return {at::randn({s.rows, s.in}), at::randn({s.rows, s.out}), at::randn({s.rows, s.out})};
}

std::vector<int64_t> Keys(int64_t rows) {
  std::vector<int64_t> keys;
  for (int64_t k = 0; k < rows; ++k) keys.push_back(DropoutTokenKey(5, 2, k / 7, k % 7));
  return keys;
}

Results RunAddTo(const LoraAdapter& lora, const Shape& s, const at::Tensor& x0, const at::Tensor& base0,
                 const at::Tensor& upstream) {
  lora.a.mutable_grad() = at::Tensor();
  lora.b.mutable_grad() = at::Tensor();
  const std::vector<int64_t> keys = Keys(s.rows);
  at::Tensor x = x0.clone().requires_grad_(true);
  // A fresh non-leaf 2-D base output, as FrozenLinear's: AddTo accumulates into it.
  at::Tensor base = base0.clone().requires_grad_(true) * 1.0f;
  at::Tensor y = lora.AddTo(base, x, true, DropoutKey{3, 4, &keys});
  Results out{y.detach().clone(), {}, {}, {}, y.grad_fn() ? y.grad_fn()->name() : ""};
  y.backward(upstream);
  out.grad_x = x.grad();
  out.grad_a = lora.a.grad().clone();
  out.grad_b = lora.b.grad().clone();
  return out;
}

// The definition, in double: y = base + scaling * (x * mask) @ A^T @ B^T.
Results Reference(const LoraAdapter& lora, const Shape& s, const at::Tensor& x0, const at::Tensor& base0,
                  const at::Tensor& upstream) {
  const std::vector<int64_t> keys = Keys(s.rows);
  at::Tensor mask = s.dropout > 0 ? LoraDropoutMask(x0, s.dropout, DropoutKey{3, 4, &keys}).to(at::kDouble)
                                  : at::ones_like(x0, at::kDouble);
  at::Tensor x = x0.to(at::kDouble).requires_grad_(true);
  at::Tensor a = lora.a.detach().to(at::kDouble).requires_grad_(true);
  at::Tensor b = lora.b.detach().to(at::kDouble).requires_grad_(true);
  at::Tensor y = base0.to(at::kDouble) + at::matmul(at::matmul(x * mask, a.t()), b.t()) * lora.scaling;
  y.backward(upstream.to(at::kDouble));
  return {y.detach(), x.grad(), a.grad(), b.grad(), ""};
}

void ExpectClose(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  // fp32 sums of up to a few hundred products of O(1) terms, against double: relative to the
  // largest magnitude, 2e-6 (a misplaced mask element or a dropped row is O(1e-2) or more).
  const double scale = want.abs().max().item<double>();
  ASSERT_GT(scale, 0) << what << " is all zeros: the check would be vacuous";
  const double err = (got.to(at::kDouble) - want).abs().max().item<double>();
  EXPECT_LE(err, 2e-6 * scale) << what << ": max error " << err << " of max " << scale;
}

TEST(LoraCpuKernels, MatchTheDefinitionInDouble) {
  const std::vector<Shape> shapes = {
      {37, 64, 48, 16, 0.1},    // 37 rows: a partial 8-row tile and a 4-row one; 48 columns: 16-wide tiles only
      {50, 96, 80, 8, 0.0},     // r 8 padded to 16; 80 columns: one 64-wide tile and one 16-wide
      {29, 48, 144, 32, 0.2},   // r 32: two vectors per row
      {45, 80, 64, 64, 0.05},   // r 64: four vectors per row, 6-row tiles
      {700, 128, 96, 16, 0.1},  // enough rows for both threads
  };
  at::manual_seed(21);
  for (const Shape& s : shapes) {
    SCOPED_TRACE("rows " + std::to_string(s.rows) + " in " + std::to_string(s.in) + " out " + std::to_string(s.out) +
                 " r " + std::to_string(s.r) + " dropout " + std::to_string(s.dropout));
    const LoraAdapter lora = MakeAdapter(s);
    const auto [x, base, upstream] = RandomInputs(s);
    const Results got = RunAddTo(lora, s, x, base, upstream), want = Reference(lora, s, x, base, upstream);
    if (KernelsExpected())
      EXPECT_NE(got.node.find("LoraCpuFunction"), std::string::npos) << "took " << got.node << ", not the kernels";
    ExpectClose(got.y, want.y, "y");
    ExpectClose(got.grad_x, want.grad_x, "dL/dx");
    ExpectClose(got.grad_a, want.grad_a, "dL/dA");
    ExpectClose(got.grad_b, want.grad_b, "dL/dB");
  }
}

// Each output sums in a fixed order, so one thread and two give the same bits (a resumed or
// re-run job must not drift with the machine's core count).
TEST(LoraCpuKernels, SameBitsWithOneThreadAndTwo) {
  const Shape s{300, 64, 160, 16, 0.1};
  at::manual_seed(4);
  const LoraAdapter lora = MakeAdapter(s);
  const auto [x, base, upstream] = RandomInputs(s);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const Results one = RunAddTo(lora, s, x, base, upstream);
  at::set_num_threads(2);
  const Results two = RunAddTo(lora, s, x, base, upstream);
  at::set_num_threads(threads);
  EXPECT_TRUE(one.y.equal(two.y));
  EXPECT_TRUE(one.grad_x.equal(two.grad_x));
  EXPECT_TRUE(one.grad_a.equal(two.grad_a));
  EXPECT_TRUE(one.grad_b.equal(two.grad_b));
}

// Without gradients (evaluation, generation) the same kernels run forward only, to the same
// bits; an x that needs no gradient still gives A and B theirs.
TEST(LoraCpuKernels, ForwardWithoutGradientsAndXWithoutGradient) {
  const Shape s{33, 64, 64, 16, 0.1};
  at::manual_seed(8);
  const LoraAdapter lora = MakeAdapter(s);
  const auto [x, base, upstream] = RandomInputs(s);
  const Results with_grad = RunAddTo(lora, s, x, base, upstream);
  const std::vector<int64_t> keys = Keys(s.rows);
  {
    at::NoGradGuard no_grad;
    at::Tensor y = lora.AddTo(base.clone(), x, true, DropoutKey{3, 4, &keys});
    EXPECT_TRUE(y.equal(with_grad.y));
  }
  lora.a.mutable_grad() = at::Tensor();
  lora.b.mutable_grad() = at::Tensor();
  at::Tensor y = lora.AddTo(base.clone(), x, true, DropoutKey{3, 4, &keys});
  EXPECT_TRUE(y.detach().equal(with_grad.y));
  y.backward(upstream);
  EXPECT_TRUE(lora.a.grad().equal(with_grad.grad_a));
  EXPECT_TRUE(lora.b.grad().equal(with_grad.grad_b));
}

}  // namespace
}  // namespace polytune::engine
