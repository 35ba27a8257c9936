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

// The moment the fixtures were rendered (UTC), which @huggingface/jinja's strftime_now printed.
std::tm FixtureNow(const nlohmann::json& cases) {
  std::tm now{};
  const std::string s = cases["now"];
  EXPECT_NE(strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &now), nullptr) << s;
  return now;
}

TEST(ChatTemplate, RendersLikeHuggingFaceJinja) {
  const nlohmann::json cases = Cases();
  int checked = 0;
  for (const auto& e : cases["expected"]) {
    const std::string name = e["template"];
    const auto& t = cases["templates"][name];
    auto tmpl = ChatTemplate::FromSource(t["source"], name);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    tmpl->set_now(FixtureNow(cases));
    std::vector<ChatMessage> messages;
    for (const auto& m : cases["conversations"][e["conversation"].get<int>()])
      messages.push_back({m["role"], m["content"]});
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
  EXPECT_EQ(checked, 84);
}

TEST(ChatTemplate, BuiltinsAreTheFixtureSources) {
  const nlohmann::json cases = Cases();
  for (const auto& name : ChatTemplate::BuiltinNames()) {
    auto t = ChatTemplate::Builtin(name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->source(), cases["templates"]["builtin_" + name]["source"].get<std::string>()) << name;
  }
  EXPECT_NE(ChatTemplate::Builtin("vicuna").status().message().find("llama3, chatml, mistral, plain"),
            std::string::npos);
}

TEST(ChatTemplate, LoopFilterCountsOnlyKeptItems) {
  auto t = ChatTemplate::FromSource(
      "{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }}{{ ',' if not loop.last }}{% endfor "
      "%}",
      "t");
  ASSERT_TRUE(t.ok()) << t.status();
  auto out = t->Render({{"system", "s"}, {"user", "u"}, {"assistant", "a"}}, false, "", "");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "1:user,2:assistant");
}

// Python Jinja semantics for what @huggingface/jinja 0.5.11 lacks (select/reject by test,
// map('filter')) and transformers' {% generation %} extension, checked by hand.
TEST(ChatTemplate, FiltersAndGenerationBlocksBeyondTheFixtures) {
  auto t = ChatTemplate::FromSource(
      "{{ [1, 2, 3, 4] | select('odd') | list | tojson }} {{ [1, 2, 3] | reject('equalto', 2) | list | tojson }} "
      "{{ messages | map(attribute='content') | map('upper') | join('|') }} {{ messages | rejectattr('role') | list | "
      "length }}"
      "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}[{{ m.content }}]{% endgeneration %}{% "
      "endif %}{% endfor %}",
      "t");
  ASSERT_TRUE(t.ok()) << t.status();
  auto out = t->Render({{"user", "hé"}, {"assistant", "ok"}}, false, "", "");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "[1, 3] [1, 3] HÉ|OK 0[ok]");
}

TEST(ChatTemplate, StrftimeNowFollowsThePinnedClock) {
  auto t = ChatTemplate::FromSource("{% if strftime_now is defined %}{{ strftime_now('%d %b %Y') }}{% endif %}", "t");
  ASSERT_TRUE(t.ok()) << t.status();
  std::tm day{};
  day.tm_year = 2024 - 1900, day.tm_mon = 6, day.tm_mday = 26;
  t->set_now(day);
  auto out = t->Render({{"user", "hi"}}, false, "", "");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "26 Jul 2024");
}

TEST(ChatTemplate, UnsupportedFeaturesAreNamed) {
  struct Case {
    std::string source, feature;
  } cases[] = {
      {"{% macro greet(x) %}hi{% endmacro %}", "'macro'"},
      {"{{ messages | groupby('role') }}", "filter 'groupby'"},
      {"{{ x.format(1) }}", "method 'format'"},
      {"{% for m in messages %}{% break %}{% endfor %}", "'break'"},
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

TEST(ChatTemplate, NumberLiteralsOutOfRangeAreErrors) {  // found by fuzzing (std::stoll threw)
  auto t = ChatTemplate::FromSource("{{ 99999999999999999999 }}", "big");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("integer literal '99999999999999999999' is out of range"), std::string::npos)
      << t.status();
  auto ok = ChatTemplate::FromSource("{{ 9223372036854775807 }}{{ 1.5 }}", "max");
  ASSERT_TRUE(ok.ok()) << ok.status();
  auto out = ok->Render({}, false, "", "");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "92233720368547758071.5");
}

TEST(ChatTemplate, SlicingADictIsAnErrorNotACrash) {  // found by fuzzing (a null list was read)
  auto t = ChatTemplate::FromSource("{{ messages[0][1:] }}", "slice");
  ASSERT_TRUE(t.ok()) << t.status();
  auto out = t->Render({{"user", "hola"}}, false, "", "");
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("only strings and lists can be sliced"), std::string::npos) << out.status();
  auto text = ChatTemplate::FromSource("{{ messages[0].content[1:3] }}{{ messages[1:] | length }}", "ok");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text->Render({{"user", "hola"}}, false, "", ""), "ol0");
}

TEST(ChatTemplate, NestingIsBoundedSoAHostileTemplateCannotOverflowTheStack) {  // found by fuzzing
  const std::string deep_expr = "{{ " + std::string(500, '[') + "1" + std::string(500, ']') + " }}";
  auto e = ChatTemplate::FromSource(deep_expr, "deep");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("nested deeper than 64 levels"), std::string::npos) << e.status();
  std::string deep_blocks;
  for (int i = 0; i < 500; ++i) deep_blocks += "{% if true %}";
  for (int i = 0; i < 500; ++i) deep_blocks += "{% endif %}";
  auto b = ChatTemplate::FromSource(deep_blocks, "blocks");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("nested deeper than 64 levels"), std::string::npos) << b.status();
  auto fine = ChatTemplate::FromSource(
      "{{ ((((1 + 2)))) * -(-3) }}{% if true %}{% if not not true %}x{% endif %}{% endif %}", "fine");
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(*fine->Render({}, false, "", ""), "9x");
}

}  // namespace
}  // namespace polytune::text
