#include "polytune/engine/loss.h"

// at::NoGradGuard: libtorch 2.x no longer declares it through <ATen/ATen.h>.
#include <ATen/core/grad_mode.h>

#include "polytune/engine/token_dataset.h"

namespace polytune::engine {

at::Tensor SumTokenCrossEntropy(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t vocab = logits.size(-1);
  // Shift the labels left (last position gets -100) rather than slicing the logits: slicing
  // would make backward allocate and copy a second logits-sized gradient.
  at::Tensor lb = labels.to(logits.device());
  at::Tensor shifted = at::cat({lb.slice(1, 1), at::full({lb.size(0), 1}, kIgnoreIndex, lb.options())}, 1);
  return at::cross_entropy_loss(logits.reshape({-1, vocab}), shifted.reshape({-1}), {}, at::Reduction::Sum,
                                kIgnoreIndex);
}

RowStats ComputeRowStats(const at::Tensor& logits, const at::Tensor& labels) {
  at::NoGradGuard no_grad;
  const int64_t rows = logits.size(0), seq = logits.size(1), vocab = logits.size(2);
  at::Tensor lg = logits.slice(1, 0, seq - 1);
  at::Tensor lb = labels.to(logits.device()).slice(1, 1);
  at::Tensor per_token =
      at::cross_entropy_loss(lg.reshape({-1, vocab}), lb.reshape({-1}), {}, at::Reduction::None, kIgnoreIndex)
          .view({rows, seq - 1});
  at::Tensor valid = lb.ne(kIgnoreIndex);
  at::Tensor correct = lg.argmax(-1).eq(lb).logical_and(valid);
  return SumRowStats(per_token, correct, valid);
}

RowStats SumRowStats(const at::Tensor& token_loss, const at::Tensor& correct, const at::Tensor& valid) {
  at::Tensor loss_rows = token_loss.to(at::kDouble).sum(1).cpu();
  at::Tensor correct_rows = correct.sum(1).cpu();
  at::Tensor target_rows = valid.sum(1).cpu();
  RowStats s;
  for (int64_t r = 0; r < loss_rows.size(0); ++r) {
    s.loss.push_back(loss_rows[r].item<double>());
    s.correct.push_back(correct_rows[r].item<int64_t>());
    s.targets.push_back(target_rows[r].item<int64_t>());
  }
  return s;
}

}  // namespace polytune::engine
