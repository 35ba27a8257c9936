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

// Options shared by `generate` and `eval --generate`.
struct GenerationArgs {
  int64_t max_new_tokens = 256;
  double temperature = 0.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  int64_t batch_size = 8;
  void AddTo(CLI::App* cmd, bool sampling);
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
