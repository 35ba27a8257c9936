// The frozen base weight of a linear layer, dense or NF4, and its matmul.
//
// FrozenLinear is an autograd function that dequantises the weight inside forward and again
// inside backward (grad_input = grad_output @ W). It saves neither the input nor the
// dequantised weight, so no full-precision copy of a quantised weight outlives the call.
#pragma once

#include <optional>

#include <ATen/ATen.h>

#include "polytune/engine/nf4.h"

namespace polytune::engine {

class FrozenWeight {
 public:
  FrozenWeight() = default;
  // A dense weight [out, in], kept as given (dtype and device).
  static FrozenWeight Dense(at::Tensor weight);
  static FrozenWeight Quantized(Nf4Tensor weight);

  int64_t out_features() const { return out_; }
  int64_t in_features() const { return in_; }
  bool is_quantized() const { return quantized_.has_value(); }
  const Nf4Tensor& nf4() const { return *quantized_; }
  const at::Tensor& dense() const { return dense_; }
  // The weight as a [out, in] tensor of `dtype` (a fresh dequantisation when quantised).
  at::Tensor Materialize(at::ScalarType dtype) const;
  int64_t StorageBytes() const;

 private:
  at::Tensor dense_;
  std::optional<Nf4Tensor> quantized_;
  int64_t out_ = 0, in_ = 0;
};

// y = x @ W^T (+ bias). Differentiable in x only; `weight` must outlive the autograd graph.
at::Tensor FrozenLinear(const at::Tensor& x, const FrozenWeight& weight, const at::Tensor& bias);

// The same node in the autograd graph as FrozenLinear (its backward gives the same gradient
// for x), but the forward values are not computed: the result holds zeros (plus bias). For a
// recomputed layer whose output is only differentiated, never read, where the product (and
// the NF4 dequantisation) would be thrown away. Without gradients it is FrozenLinear.
at::Tensor FrozenLinearGraphOnly(const at::Tensor& x, const FrozenWeight& weight, const at::Tensor& bias);

// The same node again, with the forward values already known: `product` must be exactly what
// FrozenLinear(x, weight, bias) returned for these x (kept from an earlier pass). Returns it
// (no copy, no GEMM, no dequantisation) as FrozenLinear's output; without gradients, as is.
at::Tensor FrozenLinearWithProduct(const at::Tensor& x, const FrozenWeight& weight, at::Tensor product);

}  // namespace polytune::engine
