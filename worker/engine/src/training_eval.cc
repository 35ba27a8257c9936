#include "polytune/engine/training_eval.h"

#include "absl/strings/str_cat.h"
#include "polytune/common/status_macros.h"
#include "polytune/engine/evaluator.h"

namespace polytune::engine {
namespace {

void MergeGeneration(const GenerationFigures& g, EvalFigures* f) {
  f->generated = g.examples;
  f->chrf = g.chrf;
  f->chrfpp = g.chrfpp;
  f->exact_match = g.exact_match;
  f->labelled = g.labelled;
  f->label_accuracy = g.label_accuracy;
  f->macro_f1 = g.macro_f1;
}

}  // namespace

absl::StatusOr<TrainingEvaluator> TrainingEvaluator::Create(const TrainConfig& config, const TextPipeline& pipeline,
                                                            const LlamaModel& model, std::optional<TokenDataset> eval) {
  TrainingEvaluator e;
  e.eval_ = std::move(eval);
  e.batch_size_ = config.training.micro_batch_size;
  if (!config.training.eval_generate || !e.eval_) return e;
  const spec::EvalGenerate& g = *config.training.eval_generate;
  if (!pipeline.tokenizer)
    return absl::FailedPreconditionError(
        "training.eval_generate needs a tokenizer to render prompts and read outputs (tokenizer.json in the model "
        "folder, or data.tokenizer)");
  ASSIGN_OR_RETURN(text::DataFormat format, text::ParseDataFormat(config.data.format));
  ASSIGN_OR_RETURN(std::vector<PromptCase> all,
                   LoadPromptCases(config.data.eval.path(), format, *pipeline.tokenizer,
                                   pipeline.chat_template ? &*pipeline.chat_template : nullptr));
  for (auto& c : all) {
    if (static_cast<int64_t>(e.cases_.size()) >= g.examples) break;
    if (c.reference || !c.label.empty()) e.cases_.push_back(std::move(c));
  }
  if (e.cases_.empty())
    return absl::InvalidArgumentError(absl::StrCat("training.eval_generate: no example of ", config.data.eval.path(),
                                                   " has a reference answer (a last assistant turn) or a label"));
  e.generate_ = g;
  e.tokenizer_ = pipeline.tokenizer.get();
  e.options_.generation.max_new_tokens = g.max_new_tokens;
  e.options_.generation.eos_ids = EosTokenIds(config.model.path, model.config(), pipeline.tokenizer.get());
  e.options_.batch_size = config.training.micro_batch_size;
  return e;
}

bool TrainingEvaluator::GeneratesAt(int64_t step, int64_t total_steps) const {
  if (!generate_) return false;
  return step == 0 || step == total_steps || (generate_->every > 0 && step % generate_->every == 0);
}

absl::StatusOr<EvalMetrics> TrainingEvaluator::Run(const LlamaModel& model, int64_t step, int64_t total_steps,
                                                   double epoch, Communicator& comm) {
  ASSIGN_OR_RETURN(EvalResult r, Evaluate(model, *eval_, batch_size_, comm));
  EvalMetrics m = r.ToMetrics(step, epoch);
  samples_.clear();
  if (GeneratesAt(step, total_steps)) {
    ASSIGN_OR_RETURN(GenerationEvalResult g, EvaluateGeneration(model, cases_, options_, *tokenizer_, comm));
    MergeGeneration(g.overall, &m.overall);
    for (const auto& [lang, f] : g.languages) MergeGeneration(f, &m.languages[lang]);
    samples_ = std::move(g.samples);
  }
  return m;
}

}  // namespace polytune::engine
