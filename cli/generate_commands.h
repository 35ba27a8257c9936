// `polytune generate` and the generation part of `polytune eval --generate`.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "polytune/engine/generation_eval.h"
#include "polytune/engine/llama_model.h"
#include "polytune/engine/trainer.h"

namespace polytune::cli {

// Options shared by `generate` and `eval --generate`: the flags bind straight to the engine's
// GenerationOptions (EOS ids are filled in from the model once it is loaded).
struct GenerationArgs {
  engine::GenerationOptions options;
  int64_t batch_size = 8;
  void AddTo(CLI::App* cmd, bool sampling);
  engine::GenerationOptions WithEos(std::vector<int64_t> eos_ids) const {
    engine::GenerationOptions o = options;
    o.eos_ids = std::move(eos_ids);
    return o;
  }
};

// A model for inference: loaded (quantised as asked), with the adapter applied when given.
struct InferenceModelArgs {
  std::string model, adapter, quantization = "nf4", device = "cpu";
  bool double_quant = true;
  void AddTo(CLI::App* cmd);
};
absl::StatusOr<std::unique_ptr<engine::LlamaModel>> LoadInferenceModel(const InferenceModelArgs& args);

void RegisterGenerateCommand(CLI::App& app, const std::shared_ptr<std::function<int()>>& run);

// `eval --generate`: scores generations for the examples of `data` that have a reference or a
// label, and adds the figures and samples to `eval_json` (EvalResult::ToJson() shape).
// `labels`: the declared label set (may be empty).
absl::StatusOr<engine::GenerationEvalResult> RunGenerationEval(const engine::LlamaModel& model,
                                                               const engine::TextPipeline& pipeline,
                                                               const std::string& model_dir, const std::string& data,
                                                               const std::string& format, const GenerationArgs& args,
                                                               const std::vector<std::string>& labels,
                                                               nlohmann::json* eval_json);
void PrintGenerationTable(const engine::GenerationEvalResult& result);

}  // namespace polytune::cli
