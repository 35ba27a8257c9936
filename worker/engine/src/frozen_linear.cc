#include "polytune/engine/frozen_linear.h"

#include <torch/csrc/autograd/custom_function.h>

namespace polytune::engine {

FrozenWeight FrozenWeight::Dense(at::Tensor weight) {
  FrozenWeight w;
  w.out_ = weight.size(0);
  w.in_ = weight.size(1);
  w.dense_ = weight.detach();
  return w;
}

FrozenWeight FrozenWeight::Quantized(Nf4Tensor weight) {
  FrozenWeight w;
  w.out_ = weight.shape.at(0);
  w.in_ = weight.shape.at(1);
  w.quantized_ = std::move(weight);
  return w;
}

at::Tensor FrozenWeight::Materialize(at::ScalarType dtype) const {
  if (quantized_) return DequantizeNf4(*quantized_, dtype);
  return dense_.scalar_type() == dtype ? dense_ : dense_.to(dtype);
}

int64_t FrozenWeight::StorageBytes() const {
  if (quantized_) return quantized_->StorageBytes();
  return dense_.numel() * dense_.element_size();
}

namespace {

// The weight for one matmul. A quantised weight on CPU in fp32 or bf16 is dequantised into a
// per-thread scratch buffer: the matmul consumes it at once and nothing keeps it (forward and
// backward alike), so one buffer per thread serves every layer without an allocation per call.
at::Tensor WeightForMatmul(const FrozenWeight& weight, at::ScalarType dtype) {
  if (weight.is_quantized() && (dtype == at::kFloat || dtype == at::kBFloat16) &&
      weight.nf4().packed.device().is_cpu()) {
    thread_local at::Tensor scratch;
    return DequantizeNf4IntoScratch(weight.nf4(), &scratch, dtype);
  }
  return weight.Materialize(dtype);
}

class FrozenLinearFunction : public torch::autograd::Function<FrozenLinearFunction> {
 public:
  // `given`: the product, already computed (returned as the output; it is not an input of
  // the node, so autograd does not turn it into a view). Null: compute it when `values`,
  // else zeros.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const FrozenWeight* weight,
                            bool values, at::Tensor* given) {
    ctx->saved_data["weight"] = reinterpret_cast<int64_t>(weight);
    ctx->saved_data["dtype"] = static_cast<int64_t>(x.scalar_type());
    if (given != nullptr) return std::move(*given);
    if (!values) {
      std::vector<int64_t> shape = x.sizes().vec();
      shape.back() = weight->out_features();
      return at::zeros(shape, x.options());
    }
    return at::matmul(x, WeightForMatmul(*weight, x.scalar_type()).t());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto* weight = reinterpret_cast<const FrozenWeight*>(ctx->saved_data["weight"].toInt());
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {at::matmul(grad_outputs[0].to(dtype), WeightForMatmul(*weight, dtype)), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

at::Tensor FrozenLinear(const at::Tensor& x, const FrozenWeight& weight, const at::Tensor& bias) {
  at::Tensor y = x.requires_grad() ? FrozenLinearFunction::apply(x, &weight, true, nullptr)
                                   : at::matmul(x, WeightForMatmul(weight, x.scalar_type()).t());
  if (bias.defined()) y = y + bias;
  return y;
}

at::Tensor FrozenLinearGraphOnly(const at::Tensor& x, const FrozenWeight& weight, const at::Tensor& bias) {
  if (!x.requires_grad() || !at::GradMode::is_enabled()) return FrozenLinear(x, weight, bias);
  at::Tensor y = FrozenLinearFunction::apply(x, &weight, false, nullptr);
  if (bias.defined()) y = y + bias;
  return y;
}

at::Tensor FrozenLinearWithProduct(const at::Tensor& x, const FrozenWeight& weight, at::Tensor product) {
  TORCH_CHECK(product.dim() >= 1 && product.size(-1) == weight.out_features(),
              "FrozenLinearWithProduct: the product does not have the weight's output features");
  if (!x.requires_grad() || !at::GradMode::is_enabled()) return product;
  return FrozenLinearFunction::apply(x, &weight, true, &product);
}

}  // namespace polytune::engine
