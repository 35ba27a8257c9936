// The gated MLP activation of Llama-family models: silu(gate) * up.
#pragma once

#include <ATen/ATen.h>

namespace polytune::engine {

// silu(gate) * up for tensors of one shape. On CPU in fp32, one pass forward (reading gate and
// up, writing the product) and one backward (writing both gradients), with an exp of its own
// that vectorises (within 2 ulp of expf; the result within a few ulp of the tensor ops, which
// take five passes and keep silu(gate) for backward). Elsewhere the tensor ops.
at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up);

// at::silu(gate) * up: the reference, and the path on CUDA and other dtypes.
at::Tensor SwiGluTensorOps(const at::Tensor& gate, const at::Tensor& up);

}  // namespace polytune::engine
