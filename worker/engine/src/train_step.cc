#include "polytune/engine/train_step.h"

#include "polytune/engine/chunked_loss.h"

#include <ATen/core/grad_mode.h>

#include <cmath>
#include <map>

#include "polytune/engine/loss.h"

namespace polytune::engine {

StepPlan PlanStep(const TokenDataset& train, const BatchSchedule& schedule, int64_t step, int64_t micro_batch_size,
                  int64_t grad_accum_steps, int64_t world_size, const std::vector<double>& language_weights) {
  StepPlan p;
  p.language_weights = language_weights;
  p.targets_by_language.assign(train.languages.size(), 0);
  p.step = step;
  p.micro_batch_size = micro_batch_size;
  p.per_rank = micro_batch_size * grad_accum_steps;
  p.global_batch = p.per_rank * world_size;
  p.first_position = step * p.global_batch;
  for (int64_t i = 0; i < p.global_batch; ++i) {
    const TokenExample& ex = train.examples[schedule.ExampleAt(p.first_position + i)];
    const int64_t targets = ex.TargetCount();
    p.target_tokens += targets;
    p.targets_by_language[ex.language] += targets;
    p.weighted_targets += p.WeightOf(ex.language) * static_cast<double>(targets);
    p.tokens += static_cast<int64_t>(ex.input_ids.size());
  }
  return p;
}

std::vector<double> ResolveLanguageWeights(const spec::LanguageWeights& weights, const TokenDataset& train) {
  const size_t L = train.languages.size();
  switch (weights.mode) {
    case spec::LanguageWeights::Mode::kNone:
      return {};
    case spec::LanguageWeights::Mode::kInverseFrequency: {
      std::vector<int64_t> counts(L, 0);
      for (const auto& ex : train.examples) ++counts[ex.language];
      std::vector<double> w(L, 1.0);
      for (size_t l = 0; l < L; ++l)
        if (counts[l] > 0)
          w[l] = static_cast<double>(train.examples.size()) / (static_cast<double>(L) * static_cast<double>(counts[l]));
      return w;
    }
    case spec::LanguageWeights::Mode::kExplicit: {
      std::vector<double> w(L, 1.0);
      for (size_t l = 0; l < L; ++l) {
        auto it = weights.weights.find(train.languages[l]);
        if (it != weights.weights.end()) w[l] = it->second;
      }
      return w;
    }
  }
  return {};
}

std::vector<int64_t> MicroBatchPositions(const StepPlan& plan, int64_t rank, int64_t micro) {
  std::vector<int64_t> out;
  const int64_t first = plan.first_position + rank * plan.per_rank + micro * plan.micro_batch_size;
  for (int64_t i = 0; i < plan.micro_batch_size; ++i) out.push_back(first + i);
  return out;
}

double ForwardBackward(LlamaModel& model, const TokenDataset& train, const BatchSchedule& schedule,
                       const StepPlan& plan, const std::vector<int64_t>& positions, const MicroBatchOptions& options) {
  std::vector<int64_t> idx;
  for (int64_t pos : positions) idx.push_back(schedule.ExampleAt(pos));
  Batch b = Collate(train, idx, positions, options.pack_len);
  ForwardOptions fwd;
  fwd.training = true;
  fwd.gradient_checkpointing = options.gradient_checkpointing;
  fwd.checkpoint_keeps_projections = options.checkpoint_keeps_projections;
  fwd.token_keys.resize(b.token_examples.size());
  for (size_t k = 0; k < b.token_examples.size(); ++k)
    fwd.token_keys[k] = DropoutTokenKey(options.seed, plan.step, b.token_examples[k], b.token_positions[k]);
  fwd.segment_ids = b.segment_ids;
  // Fused lm_head + cross-entropy in chunks: the [tokens x vocab] logits never exist whole.
  at::Tensor hidden = model.ForwardHidden(b.input_ids, fwd, b.position_ids);
  at::Tensor weights;  // per token, the weight of its example's language
  if (!plan.language_weights.empty()) {
    std::vector<float> w(b.token_examples.size(), 0.0f);
    std::map<int64_t, float> by_position;
    for (size_t i = 0; i < positions.size(); ++i)
      by_position[positions[i]] = static_cast<float>(plan.WeightOf(train.examples[idx[i]].language));
    for (size_t k = 0; k < w.size(); ++k)
      if (b.token_examples[k] >= 0) w[k] = by_position.at(b.token_examples[k]);
    weights = at::tensor(w, at::kFloat).view(b.labels.sizes());
  }
  at::Tensor loss_sum =
      ChunkedTokenCrossEntropySum(hidden, model.head(), b.labels, LossChunkRows(model.config().vocab_size), weights);
  const double value = loss_sum.item<double>();
  (loss_sum / plan.Normaliser()).backward();
  return value;
}

at::Tensor FlatGradients::Pack(const std::vector<double>& extras) const {
  std::vector<at::Tensor> parts;
  for (const auto& p : params_)
    parts.push_back(p.grad().defined() ? p.grad().reshape({-1}).to(at::kFloat) : at::zeros({p.numel()}, p.options()));
  at::Tensor extra = at::tensor(std::vector<float>(extras.begin(), extras.end()), at::kFloat);
  parts.push_back(extra.to(params_.empty() ? at::Device(at::kCPU) : params_[0].device()));
  return at::cat(parts);
}

std::vector<double> FlatGradients::Unpack(const at::Tensor& flat, size_t n_extras) {
  at::NoGradGuard no_grad;
  int64_t offset = 0;
  for (auto& p : params_) {
    at::Tensor g = flat.slice(0, offset, offset + p.numel()).view(p.sizes()).to(p.scalar_type());
    p.mutable_grad() = g.clone();
    offset += p.numel();
  }
  at::Tensor extras = flat.slice(0, offset, offset + static_cast<int64_t>(n_extras)).cpu().to(at::kDouble);
  std::vector<double> out;
  for (size_t i = 0; i < n_extras; ++i) out.push_back(extras[i].item<double>());
  return out;
}

absl::StatusOr<ReducedStep> ReduceGradients(FlatGradients& flat, Communicator& comm, double local_loss_sum,
                                            bool stop_requested) {
  at::Tensor buffer = flat.Pack({local_loss_sum, stop_requested ? 1.0 : 0.0});
  absl::Status st = comm.AllReduceSum(buffer);
  if (!st.ok()) return st;
  const std::vector<double> extras = flat.Unpack(buffer, 2);
  return ReducedStep{extras[0], extras[1] > 0.5};
}

double ClipGradNorm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  if (params.empty()) return 0;
  at::Tensor sq = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(params[0].device()));
  for (const auto& p : params)
    if (p.grad().defined()) sq += p.grad().to(at::kDouble).pow(2).sum();
  const double norm = std::sqrt(sq.item<double>());
  if (max_norm > 0) {
    const double coef = std::min(1.0, max_norm / (norm + 1e-6));
    if (coef < 1.0)
      for (const auto& p : params)
        if (p.grad().defined()) p.grad().mul_(coef);
  }
  return norm;
}

void ZeroGradients(std::vector<at::Tensor>& params) {
  for (auto& p : params) p.mutable_grad().reset();
}

}  // namespace polytune::engine
