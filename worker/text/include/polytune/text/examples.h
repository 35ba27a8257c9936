// Training examples in the formats the ecosystem uses, rendered and tokenised with prompt
// masking.
//
//   messages: {"messages": [{"role": "system|user|assistant", "content": "..."}], "lang": ...}
//   alpaca:   {"instruction": ..., "input": ... (optional), "output": ..., "system": ... (optional)}
//   text:     {"text": "..."}
//   tokens:   {"input_ids": [...], "labels": [...] (optional)}
// "auto" decides per line from its keys.
//
// Masking: with a chat template, only assistant turns and the end-of-turn token closing each
// are trained. Spans are found by rendering prefixes of the conversation (the text before
// turn i with the generation prompt, and the text through turn i), so any template works
// without template-specific string search. Tokens are then aligned to characters through
// the tokenizer's own decoding of the full text, so ids are exactly those of the whole
// rendered conversation.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "polytune/text/chat_template.h"
#include "polytune/text/tokenizer.h"

namespace polytune::text {

enum class DataFormat { kAuto, kMessages, kAlpaca, kText, kTokens };
absl::StatusOr<DataFormat> ParseDataFormat(const std::string& name);
const char* DataFormatName(DataFormat f);

struct Example {
  DataFormat format = DataFormat::kTokens;
  std::vector<ChatMessage> messages;       // messages and alpaca
  std::string text;                        // text
  std::vector<int64_t> input_ids, labels;  // tokens (labels may be empty)
  std::string lang;                        // "" when absent
  std::string label;                       // classification label ("label" field), "" when absent
};

// Parses one JSON line. `where` is "file:line" for errors, which also name the field.
// Training needs an assistant turn in a conversation; prompts for generation do not
// (require_assistant false).
absl::StatusOr<Example> ParseExample(const nlohmann::json& j, DataFormat format, const std::string& where,
                                     bool require_assistant = true);

struct EncodeOptions {
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // required for messages/alpaca
  bool train_on_inputs = false;
};

struct EncodedExample {
  std::string rendered;  // the exact text that was tokenised ("" for tokens)
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;                           // -100 where not trained
  std::vector<std::pair<size_t, size_t>> trained_spans;  // byte ranges of `rendered`
};

absl::StatusOr<EncodedExample> EncodeExample(const Example& example, const EncodeOptions& options,
                                             const std::string& where);

}  // namespace polytune::text
