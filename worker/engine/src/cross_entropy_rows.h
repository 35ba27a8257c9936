// The fused cross-entropy's per-row work on CPU for bf16 logits, in one kernel.
#pragma once

#include <ATen/ATen.h>

namespace polytune::engine {

// logits: contiguous bf16 [rows, vocab], as the bf16 lm_head product leaves them (Hugging Face
// computes bf16 logits too and takes the loss in fp32). targets: int64 [rows], each in
// [0, vocab). weights: fp32 [rows] (0 on ignored rows). Returns fp32 [rows]: weight * (lse -
// logit[target]), with the log-sum-exp in fp32. With `gradient`, the logits are overwritten by
// d/d logits = weight * (softmax - onehot(target)), rounded once to bf16 (the value the
// bf16 -> fp32 upcast's backward would hand the lm_head's bf16 matmul).
// Three passes over each row (max, exp and sum, gradient) instead of about eight over an fp32
// copy; per-lane partial sums keep it vectorised and the result independent of threads.
at::Tensor CrossEntropyRowsBf16(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& weights,
                                bool gradient);

}  // namespace polytune::engine
