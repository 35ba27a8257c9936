// Rotary position embeddings with Hugging Face's rotate_half convention.
#pragma once

#include <utility>

#include <ATen/ATen.h>

#include "polytune/engine/model_config.h"

namespace polytune::engine {

// inv_freq [head_dim / 2] in fp32, with linear or llama3 scaling applied.
at::Tensor RopeInverseFrequencies(const ModelConfig& config);

// cos and sin [batch, seq, head_dim] in fp32 for position_ids [batch, seq].
std::pair<at::Tensor, at::Tensor> RopeCosSin(const at::Tensor& inv_freq, const at::Tensor& position_ids);

// x * cos + rotate_half(x) * sin for x [batch, heads, seq, head_dim]; cos/sin broadcast over heads.
// On CPU in fp32, one fused pass each way with a contiguous result, bit-identical (values and
// gradients) to ApplyRopeTensorOps; elsewhere the tensor ops.
at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// The same through generic tensor ops (CUDA, other dtypes; the reference in tests).
at::Tensor ApplyRopeTensorOps(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace polytune::engine
