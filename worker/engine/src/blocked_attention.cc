#include "polytune/engine/blocked_attention.h"

#include <vector>

#include <torch/csrc/autograd/custom_function.h>

#include "polytune/engine/attention_softmax.h"
#include "polytune/engine/batched_matmul.h"

namespace polytune::engine {
namespace {

// CPU, fp32 or bf16: the blocks' forward and backward written out, as one autograd node.
// Through autograd, each block's key and value prefixes (narrow views) had their gradients
// built as zero-filled whole-sequence tensors and summed; the scores were scaled and masked in
// two more passes before the softmax. Here the softmax applies the scale and causality itself
// (attention_rows.h), and the backward adds each block's key and value gradients into the
// prefix they belong to, last block first (the last spans the whole sequence, so its product
// is the accumulator and nothing is zero-filled).
class BlockedCausalAttentionFunction : public torch::autograd::Function<BlockedCausalAttentionFunction> {
 public:
  // q, k, v: [bh, seq, dim].
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, double scale) {
    const int64_t seq = q.size(1);
    // Without a backward to come (inference, or checkpointing's first pass) each block's
    // probabilities are freed as soon as they are used.
    const bool keep = q.requires_grad() || k.requires_grad() || v.requires_grad();
    std::vector<at::Tensor> outs, probs;
    for (int64_t start = 0; start < seq; start += kAttentionBlock) {
      const int64_t rows = std::min(kAttentionBlock, seq - start), end = start + rows;
      at::Tensor scores = BatchedMatmul(q.narrow(1, start, rows), k.narrow(1, 0, end).transpose(1, 2));
      at::Tensor p = CausalSoftmaxRows(scores.contiguous(), scale, start);
      scores = at::Tensor();
      outs.push_back(BatchedMatmul(p, v.narrow(1, 0, end)));
      if (keep) probs.push_back(std::move(p));
    }
    ctx->save_for_backward({q, k, v});
    ctx->saved_data["probs"] = probs;
    ctx->saved_data["scale"] = scale;
    return at::cat(outs, 1);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2];
    // Moved out of the context, so each block's probabilities are freed once used.
    std::vector<at::Tensor> probs = ctx->saved_data["probs"].toTensorVector();
    ctx->saved_data.erase("probs");
    const double scale = ctx->saved_data["scale"].toDouble();
    const at::Tensor grad = grads[0].to(q.scalar_type()).contiguous();
    const int64_t seq = q.size(1);
    std::vector<at::Tensor> grad_q_blocks(probs.size());
    at::Tensor grad_k, grad_v;
    for (int64_t b = static_cast<int64_t>(probs.size()) - 1; b >= 0; --b) {
      const int64_t start = b * kAttentionBlock, rows = std::min(kAttentionBlock, seq - start), end = start + rows;
      const at::Tensor p = std::move(probs[static_cast<size_t>(b)]);
      const at::Tensor g = grad.narrow(1, start, rows), qb = q.narrow(1, start, rows);
      const at::Tensor keys = k.narrow(1, 0, end), values = v.narrow(1, 0, end);
      // scores = scale * q k^T: d scores = scale * softmax'(probs @ v's gradient).
      const at::Tensor grad_scores = SoftmaxBackwardRows(BatchedMatmul(g, values.transpose(1, 2)), p, scale);
      grad_q_blocks[static_cast<size_t>(b)] = BatchedMatmul(grad_scores, keys);
      at::Tensor gk = BatchedMatmul(grad_scores.transpose(1, 2), qb), gv = BatchedMatmul(p.transpose(1, 2), g);
      if (!grad_k.defined()) {
        grad_k = gk;  // end == seq: the last block sees every key
        grad_v = gv;
      } else {
        grad_k.narrow(1, 0, end).add_(gk);
        grad_v.narrow(1, 0, end).add_(gv);
      }
    }
    return {at::cat(grad_q_blocks, 1), grad_k, grad_v, at::Tensor()};
  }
};

}  // namespace

at::Tensor BlockedCausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                                  double scale) {
  const int64_t bh = q.size(0) * q.size(1), seq = q.size(2), dim = q.size(3);
  const at::Tensor q3 = q.reshape({bh, seq, dim}), k3 = k.reshape({bh, seq, dim}), v3 = v.reshape({bh, seq, dim});
  if (q.is_cpu() && (q.scalar_type() == at::kFloat || q.scalar_type() == at::kBFloat16) &&
      k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type())
    return BlockedCausalAttentionFunction::apply(q3, k3, v3, scale);
  std::vector<at::Tensor> outs;
  int64_t start = 0;
  for (const at::Tensor& qb : q3.split(kAttentionBlock, 1)) {
    const int64_t rows = qb.size(1), end = start + rows;
    at::Tensor block_mask = mask.narrow(0, start, rows).narrow(1, 0, end).unsqueeze(0).expand({bh, rows, end});
    const at::Tensor keys_t = k3.narrow(1, 0, end).transpose(1, 2);
    // scale * q @ k^T + mask: in one baddbmm, or after the batch-split GEMM where it applies.
    at::Tensor scores = BatchedMatmulSplitsBatches(qb, keys_t)
                            ? BatchedMatmul(qb, keys_t).mul_(scale).add_(block_mask)
                            : at::baddbmm(block_mask, qb, keys_t, /*beta=*/1.0, /*alpha=*/scale);
    at::Tensor probs = AttentionSoftmax(scores);
    outs.push_back(BatchedMatmul(probs, v3.narrow(1, 0, end)));
    start = end;
  }
  return at::cat(outs, 1);
}

}  // namespace polytune::engine
