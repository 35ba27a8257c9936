// RMSNorm as Hugging Face's LlamaRMSNorm: weight * (x * rsqrt(mean(x^2) + eps)).to(dtype), the
// statistics in fp32.
#pragma once

#include <ATen/ATen.h>

namespace polytune::engine {

// CPU, fp32 or bf16, with a frozen weight of x's dtype: one fused pass each way (the tensor ops
// make about eight, with an fp32 copy of x in bf16). Per row the sum of squares runs in 16
// fp32 lanes in a fixed order, so a row's result does not depend on the batch or the threads.
// In bf16 the normalised x is rounded before the weight multiplies it, as in the tensor ops;
// the backward computes in fp32 and rounds once. Everything else takes RmsNormTensorOps.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);
at::Tensor RmsNormTensorOps(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace polytune::engine
