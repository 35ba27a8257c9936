// Chat-template renderings against @huggingface/jinja (tests/reference/make_chat_template_fixtures.mjs).
#include "polytune/text/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>

#include "nlohmann/json.hpp"

namespace polytune::text {
namespace {

nlohmann::json Cases() {
  std::ifstream in(std::string(POLYTUNE_FIXTURES) + "/chat_templates/cases.json");
  return nlohmann::json::parse(in);
}

TEST(ChatTemplate, RendersLikeHuggingFaceJinja) {
  const nlohmann::json cases = Cases();
  int checked = 0;
  for (const auto& e : cases["expected"]) {
    const std::string name = e["template"];
    const auto& t = cases["templates"][name];
    auto tmpl = ChatTemplate::FromSource(t["source"], name);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    std::vector<ChatMessage> messages;
    for (const auto& m : cases["conversations"][e["conversation"].get<int>()]) messages.push_back({m["role"], m["content"]});
    auto out = tmpl->Render(messages, e["add_generation_prompt"], t["bos"], t["eos"]);
    if (e["error"].is_null()) {
      ASSERT_TRUE(out.ok()) << name << ": " << out.status();
      EXPECT_EQ(*out, e["output"].get<std::string>()) << name << " conversation " << e["conversation"];
    } else {
      ASSERT_FALSE(out.ok()) << name;
      EXPECT_NE(out.status().message().find(e["error"].get<std::string>()), std::string::npos) << out.status();
    }
    ++checked;
  }
  EXPECT_EQ(checked, 60);
}

TEST(ChatTemplate, BuiltinsAreTheFixtureSources) {
  const nlohmann::json cases = Cases();
  for (const auto& name : ChatTemplate::BuiltinNames()) {
    auto t = ChatTemplate::Builtin(name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->source(), cases["templates"]["builtin_" + name]["source"].get<std::string>()) << name;
  }
  EXPECT_NE(ChatTemplate::Builtin("vicuna").status().message().find("llama3, chatml, mistral, plain"), std::string::npos);
}

TEST(ChatTemplate, LoopFilterCountsOnlyKeptItems) {
  auto t = ChatTemplate::FromSource("{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }}{{ ',' if not loop.last }}{% endfor %}", "t");
  ASSERT_TRUE(t.ok()) << t.status();
  auto out = t->Render({{"system", "s"}, {"user", "u"}, {"assistant", "a"}}, false, "", "");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "1:user,2:assistant");
}

TEST(ChatTemplate, UnsupportedFeaturesAreNamed) {
  struct Case {
    std::string source, feature;
  } cases[] = {
      {"{% macro greet(x) %}hi{% endmacro %}", "'macro'"},
      {"{{ messages | map(attribute='role') }}", "filter 'map'"},
      {"{{ x.format(1) }}", "method 'format'"},
      {"{% for m in messages %}{% break %}{% endfor %}", "'break'"},
      {"{{ strftime_now('%Y') }}", "strftime_now"},
      {"{% if x %}never closed", "without 'endif'"},
      {"{{ 'a' ", "unclosed"},
  };
  for (const auto& c : cases) {
    auto t = ChatTemplate::FromSource(c.source, "t");
    absl::Status st = t.ok() ? t->Render({{"user", "hi"}}, false, "", "").status() : t.status();
    ASSERT_FALSE(st.ok()) << c.source;
    EXPECT_NE(st.message().find(c.feature), std::string::npos) << c.source << " -> " << st;
    EXPECT_NE(st.message().find("line 1"), std::string::npos) << st;
  }
}

}  // namespace
}  // namespace polytune::text
