// Evaluations during training: loss, perplexity and accuracy on data.eval and, at the steps
// training.eval_generate asks for, evaluation by generation on a fixed subset of it (the first
// `examples` examples with a reference answer or label), merged into one EvalMetrics record.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/common/metrics_record.h"
#include "polytune/engine/communicator.h"
#include "polytune/engine/generation_eval.h"
#include "polytune/engine/token_dataset.h"
#include "polytune/engine/train_config.h"
#include "polytune/engine/trainer.h"

namespace polytune::engine {

class TrainingEvaluator {
 public:
  // `eval` may be empty (no data.eval): then Run() is never called.
  static absl::StatusOr<TrainingEvaluator> Create(const TrainConfig& config, const TextPipeline& pipeline,
                                                  const LlamaModel& model, std::optional<TokenDataset> eval);

  bool has_eval() const { return eval_.has_value(); }
  bool GeneratesAt(int64_t step, int64_t total_steps) const;
  // Evaluates at `step`; with generation when GeneratesAt(step). Every rank takes part.
  absl::StatusOr<EvalMetrics> Run(const LlamaModel& model, int64_t step, int64_t total_steps, double epoch,
                                  Communicator& comm);
  // This rank's sample generations of the last Run() that generated (empty otherwise).
  const std::vector<GenerationSample>& samples() const { return samples_; }

 private:
  std::optional<TokenDataset> eval_;
  std::optional<spec::EvalGenerate> generate_;
  std::vector<PromptCase> cases_;
  GenerationEvalOptions options_;
  const text::Tokenizer* tokenizer_ = nullptr;
  int64_t batch_size_ = 1;
  std::vector<GenerationSample> samples_;
};

}  // namespace polytune::engine
