#include "polytune/engine/batched_matmul.h"

// at::NoGradGuard: libtorch 2.x no longer declares it through <ATen/ATen.h>.
#include <ATen/core/grad_mode.h>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "polytune/engine/cpu_threads.h"

namespace polytune::engine {
namespace {

// out[i] = a[i] @ b[i]; a and b may be transposed views (the GEMM reads them as they are).
at::Tensor SplitBatches(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ad = a.detach(), bd = b.detach();
  at::Tensor out = at::empty({a.size(0), a.size(1), b.size(2)}, a.options().requires_grad(false));
  at::parallel_for(0, a.size(0), 1, [&](int64_t begin, int64_t end) {
    at::NoGradGuard no_grad;  // grad mode is per thread; these are plain buffers
    for (int64_t i = begin; i < end; ++i) {
      at::Tensor o = out.select(0, i);
      at::mm_out(o, ad.select(0, i), bd.select(0, i));
    }
  });
  return out;
}

class BatchedMatmulFunction : public torch::autograd::Function<BatchedMatmulFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return SplitBatches(a, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& g = grads[0];
    at::Tensor ga = saved[0].requires_grad() ? SplitBatches(g, saved[1].transpose(1, 2)) : at::Tensor();
    at::Tensor gb = saved[1].requires_grad() ? SplitBatches(saved[0].transpose(1, 2), g) : at::Tensor();
    return {ga, gb};
  }
};

// libtorch's CPU bf16 bmm (oneDNN) takes a batched operand as it is only when it is
// contiguous or the transpose of a contiguous one; anything else it first copies into the
// contiguous layout, element by element: for a transposed prefix of keys, a strided gather.
// A copy that keeps the operand's inner layout is a block copy, after which the GEMM reads
// it as a transpose. (Attention's blocks: bf16 q.k^T on a [32 x 128 x 64] block against a
// key prefix ran at 270-370 GFLOP/s through libtorch's copy, 330-500 with this one.)
at::Tensor AsGemmOperand(const at::Tensor& t) {
  if (t.dim() != 3 || t.is_contiguous() || t.transpose(1, 2).is_contiguous()) return t;
  if (t.stride(1) == 1) return t.transpose(1, 2).contiguous().transpose(1, 2);
  return t.contiguous();
}

}  // namespace

bool BatchedMatmulSplitsBatches(const at::Tensor& a, const at::Tensor& b) {
  // OpenBLAS's pthread build would run each GEMM on all its threads from every worker at once.
  static const int threading = OpenBlasThreading();
  return (threading == 0 || threading == 2) && a.device().is_cpu() && b.device().is_cpu() &&
         a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && a.dim() == 3 && b.dim() == 3 &&
         a.size(0) == b.size(0) && a.size(2) == b.size(1) && a.size(0) >= 2;
}

at::Tensor BatchedMatmul(const at::Tensor& a, const at::Tensor& b) {
  if (!BatchedMatmulSplitsBatches(a, b)) {
    if (a.device().is_cpu() && a.scalar_type() == at::kBFloat16) return at::bmm(AsGemmOperand(a), AsGemmOperand(b));
    return at::bmm(a, b);
  }
  return BatchedMatmulFunction::apply(a, b);
}

}  // namespace polytune::engine
