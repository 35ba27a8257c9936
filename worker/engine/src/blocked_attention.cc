#include "polytune/engine/blocked_attention.h"

#include <vector>

#include "polytune/engine/attention_softmax.h"
#include "polytune/engine/batched_matmul.h"

namespace polytune::engine {

at::Tensor BlockedCausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                                  double scale) {
  const int64_t bh = q.size(0) * q.size(1), seq = q.size(2), dim = q.size(3);
  const at::Tensor q3 = q.reshape({bh, seq, dim}), k3 = k.reshape({bh, seq, dim}), v3 = v.reshape({bh, seq, dim});
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
