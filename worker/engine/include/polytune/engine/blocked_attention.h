// Causal self-attention on CPU by blocks of queries, each over its keys so far only.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

namespace polytune::engine {

// Queries per block. Sequences of at least two blocks take the blocked path on CPU.
constexpr int64_t kAttentionBlock = 128;

// softmax(scale * q @ k^T + mask) @ v over [batch, heads, seq, dim] tensors (k and v already
// repeated to q's heads), returned as [batch * heads, seq, dim]. `mask` is the additive
// [seq, seq] causal mask (0 on and below the diagonal, -inf above).
//
// Block i of kAttentionBlock queries attends to keys [0, end of block i) only, so the masked
// upper triangle is never computed: at seq 512 that skips 3/8 of the scores, softmax and
// probs @ V work, which had been the largest cost of the CPU training step after the linear
// layers' GEMMs, and the whole [seq, seq] score tensor never exists at once. Only the
// diagonal block needs the mask. Differentiable. On CPU in fp32 or bf16 the blocks' forward and
// backward are one autograd node written out, whose softmax applies the scale and causality
// itself (CausalSoftmaxRows; `mask` is then not read, which is why it must be the causal
// mask); other devices and dtypes go through autograd op by op.
at::Tensor BlockedCausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                                  double scale);

}  // namespace polytune::engine
