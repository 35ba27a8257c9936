// Causal-LM loss and evaluation statistics.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace polytune::engine {

// Sum of next-token cross-entropy over positions whose shifted label is not -100:
// logits [rows, seq, vocab] (fp32) predict labels[:, 1:] from positions [:, :-1].
// The caller divides by the target count of the whole optimizer step.
at::Tensor SumTokenCrossEntropy(const at::Tensor& logits, const at::Tensor& labels);

// Per-row sums without grad: loss [rows] (fp64), correct argmax predictions [rows], targets [rows].
struct RowStats {
  std::vector<double> loss;
  std::vector<int64_t> correct;
  std::vector<int64_t> targets;
};
RowStats ComputeRowStats(const at::Tensor& logits, const at::Tensor& labels);
// Sums per-token loss, correct predictions and target flags ([rows, positions] each) per row.
RowStats SumRowStats(const at::Tensor& token_loss, const at::Tensor& correct, const at::Tensor& valid);

}  // namespace polytune::engine
