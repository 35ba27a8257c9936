#include "polytune/engine/chunked_loss.h"

// at::NoGradGuard: libtorch 2.x no longer declares it through <ATen/ATen.h>.
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <limits>

#include <torch/csrc/autograd/custom_function.h>

#include "cross_entropy_rows.h"
#include "polytune/engine/token_dataset.h"

namespace polytune::engine {
namespace {

// fp32 logits of rows [begin, end): the matmul in hidden's dtype, as LlamaModel::Logits.
at::Tensor ChunkLogits(const at::Tensor& hidden, const at::Tensor& head, int64_t begin, int64_t end) {
  return at::matmul(hidden.slice(0, begin, end), head.t()).to(at::kFloat);
}

// Rows [begin, end) of the fp32 logits into `buffer` (reused across chunks: a fresh 33 MB
// tensor per chunk had cost page faults on every one).
at::Tensor FillLogits(const at::Tensor& hidden, const at::Tensor& head, int64_t begin, int64_t end,
                      at::Tensor& buffer) {
  at::Tensor logits = buffer.narrow(0, 0, end - begin);
  if (hidden.scalar_type() == at::kFloat)
    at::mm_out(logits, hidden.slice(0, begin, end), head.t());
  else  // the product in hidden's dtype, widened into the buffer in the same pass
    logits.copy_(at::matmul(hidden.slice(0, begin, end), head.t()));
  return logits;
}

// In place: logits -> exp(logits - rowmax); returns the rows' log-sum-exp and (through `sums`)
// the sums of those exponentials. The same steps as at::logsumexp (a non-finite row maximum
// taken as 0), without its [rows x vocab] temporary.
at::Tensor ExpInPlaceAndLogSumExp(at::Tensor& logits, at::Tensor* sums) {
  at::Tensor maxes = at::amax(logits, {1}, /*keepdim=*/true);
  maxes.masked_fill_(maxes.abs() == std::numeric_limits<float>::infinity(), 0);
  logits.sub_(maxes).exp_();
  *sums = logits.sum({1}, /*keepdim=*/true);
  return sums->log().add_(maxes).squeeze(1);
}

// When hidden needs a gradient, forward computes it too, chunk by chunk, while each chunk's
// logits are at hand (as Liger's fused linear cross-entropy does): the loss is a sum, so
// d loss / d hidden does not depend on anything after it but the scalar that backward brings.
// That saves recomputing the [tokens x vocab] logits in backward, a third of the head's
// matmul work (the head is frozen, so it needs no gradient of its own); backward only scales
// the stored [tokens x hidden] gradient.
class ChunkedLinearCrossEntropy : public torch::autograd::Function<ChunkedLinearCrossEntropy> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& head,
                            const at::Tensor& targets, const at::Tensor& row_weights, int64_t chunk_rows) {
    const int64_t n = hidden.size(0);
    const bool needs_grad = hidden.requires_grad();
    at::Tensor w = head.to(hidden.scalar_type());
    // Per-row weight: 0 on ignored rows, the given weight (or 1) elsewhere.
    at::Tensor valid = targets.ne(kIgnoreIndex).to(at::kFloat) * row_weights;
    at::Tensor safe_targets = targets.clamp_min(0);
    at::Tensor total = at::zeros({}, hidden.options().dtype(at::kFloat));
    at::Tensor grad_hidden = needs_grad ? at::empty_like(hidden) : at::Tensor();
    // bf16 on CPU: the chunk's bf16 logits go through one fused kernel (loss and, in place,
    // their gradient); no fp32 copy of them.
    const bool fused_bf16 = hidden.is_cpu() && hidden.scalar_type() == at::kBFloat16;
    at::Tensor buffer =
        fused_bf16 ? at::Tensor() : at::empty({std::min(n, chunk_rows), w.size(0)}, hidden.options().dtype(at::kFloat));
    for (int64_t b = 0; b < n; b += chunk_rows) {
      const int64_t e = std::min(n, b + chunk_rows);
      at::Tensor chunk_targets = safe_targets.slice(0, b, e);
      at::Tensor chunk_valid = valid.slice(0, b, e);
      if (fused_bf16) {
        at::Tensor logits = at::matmul(hidden.slice(0, b, e), w.t()).contiguous();
        total += CrossEntropyRowsBf16(logits, chunk_targets, chunk_valid, needs_grad).sum();
        if (needs_grad) {
          // As (w^T logits^T)^T: oneDNN's bf16 GEMM ran this shape ([rows x vocab] @ [vocab x
          // hidden], the long vocab as the inner dimension) 1.0-1.5x faster transposed (probe on
          // the bench's [262 x 32000] @ [32000 x 512]; the loss's forward + backward per step
          // 405 -> 301 ms median, paired); the transpose back copies only [rows x hidden].
          // fp32 (OpenBLAS) was not faster so, and keeps the plain product below.
          grad_hidden.slice(0, b, e).copy_(at::mm(w.t(), logits.t()).t());
        }
        continue;
      }
      at::Tensor logits = FillLogits(hidden, w, b, e, buffer);
      at::Tensor target_logit = logits.gather(1, chunk_targets.unsqueeze(1)).squeeze(1);
      at::Tensor sums;
      at::Tensor chunk_lse = ExpInPlaceAndLogSumExp(logits, &sums);
      total += ((chunk_lse - target_logit) * chunk_valid).sum();
      if (needs_grad) {
        // d(lse - logit_t)/d logits = softmax - onehot(t), times the row's weight (0 on ignored
        // rows); logits holds exp(logits - max) now, so softmax is one division away.
        logits.div_(sums);
        logits.scatter_add_(1, chunk_targets.unsqueeze(1), at::full({e - b, 1}, -1.0f, logits.options()));
        logits.mul_(chunk_valid.unsqueeze(1));
        at::Tensor rows = grad_hidden.slice(0, b, e);
        at::matmul_out(rows, logits.to(hidden.scalar_type()), w);
      }
    }
    ctx->save_for_backward({grad_hidden});
    return total;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const at::Tensor grad_hidden = ctx->get_saved_variables()[0];
    at::Tensor scaled = grad_hidden.mul(grad_outputs[0].to(grad_hidden.scalar_type()));
    return {scaled, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// labels[:, 1:] aligned with positions [:, :-1], as SumTokenCrossEntropy shifts them; the last
// position gets -100.
at::Tensor ShiftedTargets(const at::Tensor& labels, const at::Device& device) {
  at::Tensor lb = labels.to(device);
  return at::cat({lb.slice(1, 1), at::full({lb.size(0), 1}, kIgnoreIndex, lb.options())}, 1).reshape({-1});
}

}  // namespace

int64_t LossChunkRows(int64_t vocab) { return std::max<int64_t>(16, (int64_t{8} << 20) / std::max<int64_t>(1, vocab)); }

at::Tensor ChunkedLinearCrossEntropySum(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets,
                                        int64_t chunk_rows) {
  return ChunkedLinearCrossEntropySum(hidden, head, targets, chunk_rows, at::Tensor());
}

at::Tensor ChunkedLinearCrossEntropySum(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets,
                                        int64_t chunk_rows, const at::Tensor& weights) {
  // Always a defined tensor: autograd's custom functions refuse undefined tensor arguments.
  const at::Tensor w = weights.defined() ? weights.to(hidden.device(), at::kFloat)
                                         : at::ones({hidden.size(0)}, hidden.options().dtype(at::kFloat));
  return ChunkedLinearCrossEntropy::apply(hidden, head, targets.to(hidden.device()), w,
                                          std::max<int64_t>(1, chunk_rows));
}

at::Tensor ChunkedTokenCrossEntropySum(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& labels,
                                       int64_t chunk_rows, const at::Tensor& token_weights) {
  at::Tensor weights;
  if (token_weights.defined()) {  // shifted like the labels: row t predicts labels[:, t + 1]
    at::Tensor tw = token_weights.to(hidden.device(), at::kFloat);
    weights = at::cat({tw.slice(1, 1), at::zeros({tw.size(0), 1}, tw.options())}, 1).reshape({-1});
  }
  return ChunkedLinearCrossEntropySum(hidden.reshape({-1, hidden.size(-1)}), head,
                                      ShiftedTargets(labels, hidden.device()), chunk_rows, weights);
}

RowStats ChunkedRowStats(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& labels,
                         int64_t chunk_rows) {
  at::NoGradGuard no_grad;
  const int64_t rows = hidden.size(0), seq = hidden.size(1);
  at::Tensor flat = hidden.reshape({-1, hidden.size(-1)});
  at::Tensor targets = ShiftedTargets(labels, hidden.device());
  at::Tensor w = head.to(hidden.scalar_type());
  at::Tensor loss = at::empty({rows * seq}, at::TensorOptions().dtype(at::kDouble).device(hidden.device()));
  at::Tensor correct = at::empty({rows * seq}, at::TensorOptions().dtype(at::kLong).device(hidden.device()));
  for (int64_t b = 0; b < rows * seq; b += chunk_rows) {
    const int64_t e = std::min(rows * seq, b + chunk_rows);
    at::Tensor logits = ChunkLogits(flat, w, b, e);
    at::Tensor t = targets.slice(0, b, e);
    loss.slice(0, b, e).copy_(at::cross_entropy_loss(logits, t, {}, at::Reduction::None, kIgnoreIndex));
    correct.slice(0, b, e).copy_(logits.argmax(-1).eq(t).logical_and(t.ne(kIgnoreIndex)));
  }
  return SumRowStats(loss.view({rows, seq}), correct.view({rows, seq}), targets.ne(kIgnoreIndex).view({rows, seq}));
}

}  // namespace polytune::engine
