// Attention's softmax over the last dimension, in fp32 precision, returned in the scores' dtype
// (Hugging Face's softmax(dtype=float32).to(dtype)).
#pragma once

#include <ATen/ATen.h>

namespace polytune::engine {

// fp32, float64 and CUDA: at::softmax in at least fp32, cast back. bf16 on CPU: libtorch's bf16
// softmax, which computes in fp32 and rounds once (the same bits as the cast-back fp32
// softmax), with a backward that reads the bf16 probabilities and computes
// p (g - sum(g p)) in fp32, rounding once: no fp32 copy of the scores, the probabilities or
// their gradient, which the cast-back path makes and keeps for backward. The gradient differs
// from the cast-back path's by using the bf16-rounded p (within a bf16 ulp or two of it).
at::Tensor AttentionSoftmax(const at::Tensor& scores);

// Row kernels for the blocked causal attention's own forward and backward (CPU, fp32 or bf16).
// scores: contiguous [batch, rows, keys]; row r of each batch item is query first_row + r and
// sees keys [0, first_row + r] (first_row + rows <= keys). Returns the probabilities in the
// scores' dtype: softmax of x = scale * score (rounded to that dtype first, as a separate
// scaling op stores it, and as Hugging Face's eager attention rounds its scaled scores) over
// the keys each row sees, in fp32 (max, exp, a sum in 16 fixed lanes) and rounded once; 0 for
// the keys it does not see. Equivalent to softmax(scale * scores + causal mask) without the
// scaled and masked copies of the scores.
at::Tensor CausalSoftmaxRows(const at::Tensor& scores, double scale, int64_t first_row);

// softmax's backward times scale over the last dimension: scale * p (g - sum(g p)), from the
// probabilities p the forward returned and their gradient g, in fp32, rounded once.
at::Tensor SoftmaxBackwardRows(const at::Tensor& grad, const at::Tensor& probs, double scale);

// The cast-back path itself, for tests.
at::Tensor AttentionSoftmaxTensorOps(const at::Tensor& scores);

}  // namespace polytune::engine
