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

// The cast-back path itself, for tests.
at::Tensor AttentionSoftmaxTensorOps(const at::Tensor& scores);

}  // namespace polytune::engine
