#include "polytune/text/chat_template.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace polytune::text {
namespace {

// Built-ins: the published Llama 3 instruct template, ChatML as Qwen uses it, Mistral's v1
// [INST] format (a system message is prepended to the first user turn), and a plain
// "### User / ### Assistant" format for models without a chat vocabulary.
const std::map<std::string, std::string>& Builtins() {
  static const std::map<std::string, std::string> kTemplates = {
      {"llama3",
       "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
       "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
       "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
       "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"},
      {"chatml",
       "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
       "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
      {"mistral",
       "{{ bos_token }}{% set ns = namespace(system='') %}{% for message in messages %}{% if message['role'] == "
       "'system' %}{% set ns.system = message['content'] + '\n\n' %}{% elif message['role'] == 'user' %}{{ '[INST] ' + "
       "ns.system + message['content'] + ' [/INST]' }}{% set ns.system = '' %}{% elif message['role'] == 'assistant' "
       "%}{{ message['content'] + eos_token }}{% else %}{{ raise_exception('Only system, user and assistant roles are "
       "supported!') }}{% endif %}{% endfor %}"},
      {"plain",
       "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% elif "
       "message['role'] == 'user' %}{{ '### User:\n' + message['content'] + '\n\n' }}{% else %}{{ '### Assistant:\n' + "
       "message['content'] + eos_token + '\n\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### "
       "Assistant:\n' }}{% endif %}"},
  };
  return kTemplates;
}

}  // namespace

const std::vector<std::string>& ChatTemplate::BuiltinNames() {
  static const std::vector<std::string> kNames = {"llama3", "chatml", "mistral", "plain"};
  return kNames;
}

absl::StatusOr<ChatTemplate> ChatTemplate::Builtin(const std::string& name) {
  auto it = Builtins().find(name);
  if (it == Builtins().end())
    return absl::InvalidArgumentError(
        absl::StrCat("unknown chat template '", name, "'; built-ins are ", absl::StrJoin(BuiltinNames(), ", ")));
  return FromSource(it->second, name);
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromSource(const std::string& source, const std::string& name) {
  auto t = jinja::Template::Parse(source, absl::StrCat("chat template '", name, "'"));
  if (!t.ok()) return t.status();
  ChatTemplate c;
  c.template_ = std::move(*t);
  c.name_ = name;
  c.source_ = source;
  return c;
}

absl::StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                                 const std::string& bos_token, const std::string& eos_token) const {
  jinja::List list;
  for (const auto& m : messages)
    list.push_back(
        jinja::Value::MakeDict({{"role", jinja::Value::Str(m.role)}, {"content", jinja::Value::Str(m.content)}}));
  jinja::Value ctx = jinja::Value::MakeDict({{"messages", jinja::Value::MakeList(std::move(list))},
                                             {"add_generation_prompt", jinja::Value::Bool(add_generation_prompt)},
                                             {"bos_token", jinja::Value::Str(bos_token)},
                                             {"eos_token", jinja::Value::Str(eos_token)}});
  return now_ ? template_.Render(ctx, *now_) : template_.Render(ctx);
}

}  // namespace polytune::text
