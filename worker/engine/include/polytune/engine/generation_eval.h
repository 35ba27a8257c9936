// Prompts from data, and evaluation by generation: each example's prompt is generated from and
// the output scored against its reference answer (chrF, chrF++, exact match) and, for labelled
// examples, its label (accuracy, macro P/R/F1), overall and per language.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "polytune/engine/communicator.h"
#include "polytune/engine/generation.h"
#include "polytune/engine/llama_model.h"
#include "polytune/text/chat_template.h"
#include "polytune/text/examples.h"
#include "polytune/text/tokenizer.h"

namespace polytune::engine {

// One example's prompt and what its output is scored against.
struct PromptCase {
  std::string where;  // file:line
  std::string lang;   // "und" when the example has none
  std::string prompt;
  std::vector<int64_t> prompt_ids;
  std::optional<std::string> reference;  // the last assistant turn (or a tokens example's labels)
  std::string label;                     // "" when unlabelled
};

// The prompt of an example: a conversation (messages, alpaca) up to its last assistant turn,
// rendered with the chat template and its generation prompt; text as it is; tokens up to the
// first labelled position (the labelled rest, decoded, is the reference).
absl::StatusOr<PromptCase> MakePromptCase(const text::Example& example, const text::Tokenizer& tokenizer,
                                          const text::ChatTemplate* chat_template, const std::string& where);
// A single user turn (what `polytune generate --prompt` sends).
absl::StatusOr<PromptCase> MakeUserPrompt(const std::string& user_text, const text::Tokenizer& tokenizer,
                                          const text::ChatTemplate* chat_template);
// Every line of a JSONL file in `format`; a malformed line is an error naming file:line.
absl::StatusOr<std::vector<PromptCase>> LoadPromptCases(const std::string& path, text::DataFormat format,
                                                        const text::Tokenizer& tokenizer,
                                                        const text::ChatTemplate* chat_template);

// End-of-sequence ids: config.json's eos_token_id, the tokenizer's EOS, and every id of
// generation_config.json's eos_token_id (an int or a list) when the model folder has one.
std::vector<int64_t> EosTokenIds(const std::string& model_dir, const ModelConfig& config,
                                 const text::Tokenizer* tokenizer);

// Generates for `cases` in batches of `batch_size`, grouped by prompt length (outputs keep
// the input order; stream ids are the case indices, so sampling does not depend on batching).
absl::StatusOr<std::vector<Generation>> GenerateForCases(const LlamaModel& model, const std::vector<PromptCase>& cases,
                                                         const GenerationOptions& options, int64_t batch_size,
                                                         const text::Tokenizer& tokenizer);

struct GenerationFigures {
  int64_t examples = 0;         // examples with a reference answer
  double chrf = 0, chrfpp = 0;  // corpus-level, 0..100
  double exact_match = 0;       // fraction
  int64_t labelled = 0;         // examples with a label
  double label_accuracy = 0, macro_precision = 0, macro_recall = 0, macro_f1 = 0;
  int64_t generated_tokens = 0;
};

struct GenerationSample {
  std::string lang, prompt, output, reference, label;
  double chrf = 0;  // sentence-level
};

struct GenerationEvalResult {
  GenerationFigures overall;
  std::map<std::string, GenerationFigures> languages;
  std::vector<GenerationSample> samples;  // the first few per language
  // Adds chrf, chrfpp, exact_match, generated (and label_* when labelled) to the objects of
  // an EvalResult::ToJson() shape: {"overall": {...}, "languages": {lang: {...}}}.
  void AddToJson(nlohmann::json* eval_json) const;
  nlohmann::json SamplesJson() const;
};

struct GenerationEvalOptions {
  GenerationOptions generation;
  int64_t batch_size = 8;
  int64_t samples_per_language = 3;
  // Declared label set; empty: the labels of the cases.
  std::vector<std::string> labels;
};

// Each rank generates for cases i with i % world == rank; the statistics are summed across
// ranks (every rank returns the same figures; samples come from this rank's share).
absl::StatusOr<GenerationEvalResult> EvaluateGeneration(const LlamaModel& model, const std::vector<PromptCase>& cases,
                                                        const GenerationEvalOptions& options,
                                                        const text::Tokenizer& tokenizer, Communicator& comm);

}  // namespace polytune::engine
