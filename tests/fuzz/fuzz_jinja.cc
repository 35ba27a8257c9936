// Fuzz target: the Jinja parser and renderer behind chat templates (a model's
// tokenizer_config.json is untrusted input). The input is a template, rendered through
// ChatTemplate with a conversation in every role, with and without the generation prompt.
#include <cstdint>
#include <ctime>
#include <string>

#include "polytune/text/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace polytune::text;
  const std::string source(reinterpret_cast<const char*>(data), size);
  auto tmpl = ChatTemplate::FromSource(source, "fuzz");
  if (!tmpl.ok()) return 0;
  std::tm now{};
  now.tm_year = 126;
  now.tm_mon = 10;
  now.tm_mday = 26;
  tmpl->set_now(now);
  const std::vector<ChatMessage> messages = {{"system", "Eres un asistente médico."},
                                             {"user", "¿Qué dosis? 用量は?"},
                                             {"assistant", "500 mg cada 8 horas."},
                                             {"user", "Danke"}};
  for (bool generation_prompt : {false, true}) (void)tmpl->Render(messages, generation_prompt, "<s>", "</s>");
  return 0;
}
