#include "polytune/text/examples.h"

#include "absl/strings/str_cat.h"

namespace polytune::text {
namespace {

absl::Status FieldError(const std::string& where, const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": field '", field, "' ", why));
}

absl::Status ReadString(const nlohmann::json& j, const std::string& where, const std::string& field, bool required,
                        std::string* out) {
  if (!j.contains(field) || j[field].is_null()) {
    if (required) return FieldError(where, field, "is missing");
    return absl::OkStatus();
  }
  if (!j[field].is_string()) return FieldError(where, field, "must be a string");
  *out = j[field].get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadIds(const nlohmann::json& j, const std::string& where, const std::string& field,
                     std::vector<int64_t>* out) {
  if (!j[field].is_array()) return FieldError(where, field, "must be an array of integers");
  for (size_t i = 0; i < j[field].size(); ++i) {
    if (!j[field][i].is_number_integer())
      return FieldError(where, field, absl::StrCat("element ", i, " is not an integer"));
    out->push_back(j[field][i].get<int64_t>());
  }
  return absl::OkStatus();
}

// Byte offset in `text` where each token ends. Tokens are decoded by the tokenizer itself
// (growing prefixes); the decoded string is then aligned to `text`, allowing the spaces a
// sentencepiece tokenizer inserts after special tokens. Fails if they cannot be aligned.
absl::StatusOr<std::vector<size_t>> TokenEnds(const Tokenizer& tok, const std::vector<int64_t>& ids,
                                              const std::string& text, const std::string& where) {
  std::vector<size_t> decoded_ends(ids.size());
  std::vector<int64_t> prefix;
  prefix.reserve(ids.size());
  for (size_t k = 0; k < ids.size(); ++k) {
    prefix.push_back(ids[k]);
    decoded_ends[k] = tok.DecodeRaw(prefix).size();
  }
  const std::string decoded = tok.DecodeRaw(ids);
  // to_text[d] = offset in `text` of decoded byte d.
  std::vector<size_t> to_text(decoded.size() + 1);
  size_t t = 0;
  for (size_t d = 0; d < decoded.size(); ++d) {
    to_text[d] = t;
    if (t < text.size() && decoded[d] == text[t])
      ++t;
    else if (decoded[d] != ' ')
      return absl::FailedPreconditionError(
          absl::StrCat(where,
                       ": the tokenizer does not decode the rendered text back "
                       "to itself, so trained spans cannot be located; use data.train_on_inputs"));
  }
  to_text[decoded.size()] = t;
  std::vector<size_t> ends(ids.size());
  for (size_t k = 0; k < ids.size(); ++k) ends[k] = to_text[std::min(decoded_ends[k], decoded.size())];
  return ends;
}

}  // namespace

absl::StatusOr<DataFormat> ParseDataFormat(const std::string& name) {
  if (name == "auto") return DataFormat::kAuto;
  if (name == "messages") return DataFormat::kMessages;
  if (name == "alpaca") return DataFormat::kAlpaca;
  if (name == "text") return DataFormat::kText;
  if (name == "tokens") return DataFormat::kTokens;
  return absl::InvalidArgumentError(
      absl::StrCat("data format '", name, "' is not one of auto, messages, alpaca, text, tokens"));
}

const char* DataFormatName(DataFormat f) {
  switch (f) {
    case DataFormat::kAuto:
      return "auto";
    case DataFormat::kMessages:
      return "messages";
    case DataFormat::kAlpaca:
      return "alpaca";
    case DataFormat::kText:
      return "text";
    case DataFormat::kTokens:
      return "tokens";
  }
  return "?";
}

absl::StatusOr<Example> ParseExample(const nlohmann::json& j, DataFormat format, const std::string& where,
                                     bool require_assistant) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": line must be a JSON object"));
  if (format == DataFormat::kAuto) {
    if (j.contains("messages"))
      format = DataFormat::kMessages;
    else if (j.contains("instruction"))
      format = DataFormat::kAlpaca;
    else if (j.contains("text"))
      format = DataFormat::kText;
    else if (j.contains("input_ids"))
      format = DataFormat::kTokens;
    else
      return absl::InvalidArgumentError(absl::StrCat(where,
                                                     ": cannot tell the format; expected a 'messages', 'instruction', "
                                                     "'text' or 'input_ids' field"));
  }
  Example ex;
  ex.format = format;
  absl::Status st = ReadString(j, where, "lang", false, &ex.lang);
  if (!st.ok()) return st;
  // A label may be a string or a number/boolean (0/1 classes), compared as text.
  if (j.contains("label") && (j["label"].is_number_integer() || j["label"].is_boolean()))
    ex.label = j["label"].dump();
  else if (!(st = ReadString(j, where, "label", false, &ex.label)).ok())
    return st;
  switch (format) {
    case DataFormat::kMessages: {
      if (!j.contains("messages")) return FieldError(where, "messages", "is missing");
      const auto& ms = j["messages"];
      if (!ms.is_array() || ms.empty()) return FieldError(where, "messages", "must be a non-empty array");
      bool has_assistant = false;
      for (size_t i = 0; i < ms.size(); ++i) {
        const std::string field = absl::StrCat("messages[", i, "]");
        if (!ms[i].is_object()) return FieldError(where, field, "must be an object with role and content");
        ChatMessage m;
        st = ReadString(ms[i], where, "role", true, &m.role);
        if (!st.ok()) return FieldError(where, field + ".role", "must be a string");
        st = ReadString(ms[i], where, "content", true, &m.content);
        if (!st.ok()) return FieldError(where, field + ".content", "must be a string");
        if (m.role != "system" && m.role != "user" && m.role != "assistant")
          return FieldError(where, field + ".role",
                            absl::StrCat("is '", m.role, "'; expected system, user or assistant"));
        has_assistant |= m.role == "assistant";
        ex.messages.push_back(std::move(m));
      }
      if (!has_assistant && require_assistant)
        return FieldError(where, "messages", "has no assistant turn to train on");
      break;
    }
    case DataFormat::kAlpaca: {
      std::string instruction, input, output, system;
      if (!(st = ReadString(j, where, "instruction", true, &instruction)).ok()) return st;
      if (!(st = ReadString(j, where, "input", false, &input)).ok()) return st;
      if (!(st = ReadString(j, where, "output", true, &output)).ok()) return st;
      if (!(st = ReadString(j, where, "system", false, &system)).ok()) return st;
      if (!system.empty()) ex.messages.push_back({"system", system});
      ex.messages.push_back({"user", input.empty() ? instruction : instruction + "\n\n" + input});
      ex.messages.push_back({"assistant", output});
      break;
    }
    case DataFormat::kText:
      if (!(st = ReadString(j, where, "text", true, &ex.text)).ok()) return st;
      if (ex.text.empty()) return FieldError(where, "text", "is empty");
      break;
    case DataFormat::kTokens:
      if (!j.contains("input_ids")) return FieldError(where, "input_ids", "is missing");
      if (!(st = ReadIds(j, where, "input_ids", &ex.input_ids)).ok()) return st;
      if (ex.input_ids.empty()) return FieldError(where, "input_ids", "must not be empty");
      if (j.contains("labels") && !j["labels"].is_null()) {
        if (!(st = ReadIds(j, where, "labels", &ex.labels)).ok()) return st;
        if (ex.labels.size() != ex.input_ids.size())
          return FieldError(where, "labels",
                            absl::StrCat("has ", ex.labels.size(), " entries but input_ids has ", ex.input_ids.size()));
      }
      break;
    case DataFormat::kAuto:
      break;
  }
  return ex;
}

absl::StatusOr<EncodedExample> EncodeExample(const Example& ex, const EncodeOptions& o, const std::string& where) {
  EncodedExample out;
  if (ex.format == DataFormat::kTokens) {
    out.input_ids = ex.input_ids;
    out.labels = ex.labels.empty() ? ex.input_ids : ex.labels;
    return out;
  }
  if (!o.tokenizer)
    return absl::FailedPreconditionError(absl::StrCat(where, ": ", DataFormatName(ex.format),
                                                      " data needs a tokenizer (tokenizer.json in the model folder)"));
  const Tokenizer& tok = *o.tokenizer;
  if (ex.format == DataFormat::kText) {
    out.rendered = ex.text;
    out.input_ids = tok.Encode(ex.text, /*add_special_tokens=*/true);
    if (tok.eos_id() && (out.input_ids.empty() || out.input_ids.back() != *tok.eos_id()))
      out.input_ids.push_back(*tok.eos_id());
    out.labels = out.input_ids;
    out.trained_spans.emplace_back(0, out.rendered.size());
    return out;
  }
  if (!o.chat_template) return absl::FailedPreconditionError(absl::StrCat(where, ": chat data needs a chat template"));
  const std::string bos = tok.bos_id() ? tok.IdToToken(*tok.bos_id()) : "";
  const std::string eos = tok.eos_id() ? tok.IdToToken(*tok.eos_id()) : "";
  auto full = o.chat_template->Render(ex.messages, false, bos, eos);
  if (!full.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", full.status().message()));
  out.rendered = *full;
  out.input_ids = tok.Encode(out.rendered, /*add_special_tokens=*/false);
  if (o.train_on_inputs) {
    out.labels = out.input_ids;
    out.trained_spans.assign(1, {0, out.rendered.size()});
    return out;
  }
  for (size_t i = 0; i < ex.messages.size(); ++i) {
    if (ex.messages[i].role != "assistant") continue;
    std::vector<ChatMessage> before(ex.messages.begin(), ex.messages.begin() + i);
    std::vector<ChatMessage> through(ex.messages.begin(), ex.messages.begin() + i + 1);
    auto prompt = o.chat_template->Render(before, true, bos, eos);
    auto turn = o.chat_template->Render(through, false, bos, eos);
    if (!prompt.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", prompt.status().message()));
    if (!turn.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", turn.status().message()));
    // The turn starts where the prompt with the generation prompt ends, and runs while the
    // rendering through this turn agrees with the whole conversation (some templates always
    // append a generation prompt, so agreement rather than a prefix test)...
    const size_t start = prompt->size();
    if (out.rendered.compare(0, start, *prompt) != 0)
      return absl::FailedPreconditionError(absl::StrCat(
          where, ": chat template '", o.chat_template->name(), "' does not render the prompt of assistant turn ", i,
          " as a prefix of the conversation, so its span cannot be located; use data.train_on_inputs or another "
          "data.chat_template"));
    size_t end = start;
    while (end < turn->size() && end < out.rendered.size() && (*turn)[end] == out.rendered[end]) ++end;
    // ...and ends with the first special token after the content (the end-of-turn or EOS
    // token); without one, trailing whitespace is not trained.
    if (auto special = tok.FindSpecialToken(out.rendered, start, end)) {
      end = special->second;
    } else {
      while (end > start && (out.rendered[end - 1] == '\n' || out.rendered[end - 1] == ' ')) --end;
    }
    out.trained_spans.emplace_back(start, end);
  }
  auto ends = TokenEnds(tok, out.input_ids, out.rendered, where);
  if (!ends.ok()) return ends.status();
  out.labels.assign(out.input_ids.size(), -100);
  size_t start = 0;
  for (size_t k = 0; k < out.input_ids.size(); ++k) {
    const size_t end = (*ends)[k];
    for (const auto& [a, b] : out.trained_spans) {
      // A token belongs to a span when most of its characters do.
      const size_t lo = std::max(start, a), hi = std::min(end, b);
      if (hi > lo && 2 * (hi - lo) >= end - start) out.labels[k] = out.input_ids[k];
    }
    start = end;
  }
  return out;
}

}  // namespace polytune::text
