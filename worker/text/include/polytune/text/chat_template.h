// Chat templates: the model's own (tokenizer_config.json's chat_template, rendered by the
// Jinja subset in jinja.h) or a built-in one. Rendering matches Hugging Face's
// apply_chat_template byte for byte (fixtures: tests/fixtures/chat_templates/).
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/text/jinja.h"

namespace polytune::text {

struct ChatMessage {
  std::string role;  // system | user | assistant
  std::string content;
};

class ChatTemplate {
 public:
  // "llama3", "chatml", "mistral" or "plain".
  static absl::StatusOr<ChatTemplate> Builtin(const std::string& name);
  static absl::StatusOr<ChatTemplate> FromSource(const std::string& source, const std::string& name);
  static const std::vector<std::string>& BuiltinNames();

  // Renders like apply_chat_template(messages, add_generation_prompt=...), with bos_token and
  // eos_token bound as the template expects.
  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                     const std::string& bos_token, const std::string& eos_token) const;
  // Pins what strftime_now() returns (Llama 3.x templates print today's date); by default the
  // local wall clock at render time, as transformers does.
  void set_now(const std::tm& now) { now_ = now; }
  const std::string& name() const { return name_; }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  jinja::Template template_;
  std::string name_;
  std::optional<std::tm> now_;
};

}  // namespace polytune::text
