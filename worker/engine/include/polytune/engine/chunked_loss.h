// Fused lm_head + cross-entropy, chunk by chunk: the [tokens x vocab] logits are never held
// whole. When hidden requires grad, forward also turns each chunk's logits into the hidden
// states' gradient while they are at hand (the head is frozen, so it needs none) and backward
// only scales it: the logits are computed once per step, not again in backward. This is what
// Liger's and Unsloth's fused linear cross-entropy do on GPU; on CPU it takes the
// full-vocabulary fp32 logits (and their gradient) out of peak memory.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

#include "polytune/engine/loss.h"

namespace polytune::engine {

// Rows per chunk for a vocabulary: about 8M logits (32 MB fp32) per chunk.
int64_t LossChunkRows(int64_t vocab);

// Sum over rows with target != -100 of cross-entropy(softmax(hidden @ head^T), target).
// hidden [N, H] (may require grad), head [V, H] (frozen), targets [N] int64. Logits are
// computed in hidden's dtype and reduced in fp32, as LlamaModel::Logits + cross_entropy do.
at::Tensor ChunkedLinearCrossEntropySum(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets,
                                        int64_t chunk_rows);

// With `weights` [N] (fp32, defined): the sum of weight x cross-entropy instead.
at::Tensor ChunkedLinearCrossEntropySum(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets,
                                        int64_t chunk_rows, const at::Tensor& weights);

// The causal-LM form: hidden [rows, seq, H] predicts labels[:, 1:] from positions [:, :-1]
// (as SumTokenCrossEntropy on the logits). `token_weights` [rows, seq] (optional) weighs the
// loss of predicting labels[:, t] by token_weights[:, t].
at::Tensor ChunkedTokenCrossEntropySum(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& labels,
                                       int64_t chunk_rows, const at::Tensor& token_weights = at::Tensor());

// ComputeRowStats without the full logits: per batch row loss, correct argmax and targets.
RowStats ChunkedRowStats(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& labels,
                         int64_t chunk_rows);

}  // namespace polytune::engine
