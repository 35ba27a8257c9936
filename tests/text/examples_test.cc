#include "polytune/text/examples.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "nlohmann/json.hpp"

namespace polytune::text {
namespace {

const std::string kDir = std::string(POLYTUNE_FIXTURES) + "/tokenizers/";

struct Fixture {
  std::unique_ptr<Tokenizer> tok;
  ChatTemplate tmpl;
};

Fixture Load(const std::string& name) {
  auto tok = Tokenizer::Load(kDir + name);
  EXPECT_TRUE(tok.ok()) << tok.status();
  auto tmpl = ChatTemplate::FromSource((*tok)->chat_template(), name);
  EXPECT_TRUE(tmpl.ok()) << tmpl.status();
  return {std::move(*tok), std::move(*tmpl)};
}

// The decoded text of each maximal run of trained tokens.
std::vector<std::string> TrainedRuns(const Tokenizer& tok, const EncodedExample& e) {
  std::vector<std::string> runs;
  std::vector<int64_t> cur;
  for (size_t k = 0; k <= e.labels.size(); ++k) {
    if (k < e.labels.size() && e.labels[k] != -100) {
      cur.push_back(e.labels[k]);
    } else if (!cur.empty()) {
      runs.push_back(tok.DecodeRaw(cur));
      cur.clear();
    }
  }
  return runs;
}

Example Conversation() {
  auto ex = ParseExample(nlohmann::json::parse(R"({"messages": [
      {"role": "system", "content": "Eres un asistente médico."},
      {"role": "user", "content": "¿Qué es la hipertensión?"},
      {"role": "assistant", "content": "Presión arterial alta de forma sostenida."},
      {"role": "user", "content": "¿Y el tratamiento?"},
      {"role": "assistant", "content": "Dieta, ejercicio y fármacos como IECA."}], "lang": "es"})"),
                         DataFormat::kAuto, "d.jsonl:1");
  EXPECT_TRUE(ex.ok()) << ex.status();
  return *ex;
}

TEST(Masking, Llama3TrainsAssistantTurnsAndTheirEotOnly) {
  Fixture f = Load("llama3");
  auto e = EncodeExample(Conversation(), {f.tok.get(), &f.tmpl, false}, "d.jsonl:1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->input_ids, f.tok->Encode(e->rendered, false)) << "ids must be those of the whole rendered text";
  EXPECT_EQ(TrainedRuns(*f.tok, *e), (std::vector<std::string>{"Presión arterial alta de forma sostenida.<|eot_id|>",
                                                               "Dieta, ejercicio y fármacos como IECA.<|eot_id|>"}));
  EXPECT_EQ(e->input_ids.front(), *f.tok->TokenToId("<|begin_of_text|>"));
}

TEST(Masking, Qwen2ChatMlTrainsContentAndImEnd) {
  Fixture f = Load("qwen2_5");
  auto e = EncodeExample(Conversation(), {f.tok.get(), &f.tmpl, false}, "d.jsonl:1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(TrainedRuns(*f.tok, *e), (std::vector<std::string>{"Presión arterial alta de forma sostenida.<|im_end|>",
                                                               "Dieta, ejercicio y fármacos como IECA.<|im_end|>"}));
}

TEST(Masking, MistralBuiltinWithSentencepieceTokenizer) {
  auto tok = Tokenizer::Load(kDir + "llama2");
  ASSERT_TRUE(tok.ok());
  auto tmpl = ChatTemplate::Builtin("mistral");
  ASSERT_TRUE(tmpl.ok());
  auto e = EncodeExample(Conversation(), {tok->get(), &*tmpl, false}, "d.jsonl:1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(TrainedRuns(**tok, *e), (std::vector<std::string>{"Presión arterial alta de forma sostenida.</s>",
                                                              "Dieta, ejercicio y fármacos como IECA.</s>"}));
}

ChatTemplate FixtureTemplate(const std::string& name) {
  std::ifstream in(std::string(POLYTUNE_FIXTURES) + "/chat_templates/cases.json");
  auto t = ChatTemplate::FromSource(nlohmann::json::parse(in)["templates"][name]["source"], name);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

TEST(Masking, Llama32TemplateWithItsDatedSystemHeader) {
  Fixture f = Load("llama3");
  ChatTemplate tmpl = FixtureTemplate("llama3_2_hf");
  auto e = EncodeExample(Conversation(), {f.tok.get(), &tmpl, false}, "d.jsonl:1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_NE(e->rendered.find("Today Date: "), std::string::npos);
  EXPECT_EQ(TrainedRuns(*f.tok, *e), (std::vector<std::string>{"Presión arterial alta de forma sostenida.<|eot_id|>",
                                                               "Dieta, ejercicio y fármacos como IECA.<|eot_id|>"}));
}

TEST(Masking, MistralV3TemplateWithoutSystemAndItsRefusalWithOne) {
  auto tok = Tokenizer::Load(kDir + "llama2");
  ASSERT_TRUE(tok.ok());
  ChatTemplate tmpl = FixtureTemplate("mistral_v3_hf");
  Example ex = Conversation();
  ex.messages.erase(ex.messages.begin());
  auto e = EncodeExample(ex, {tok->get(), &tmpl, false}, "d.jsonl:1");
  ASSERT_TRUE(e.ok()) << e.status();
  // The space the template puts before the answer is in its first token ("▁Pres"), which the
  // decoder prints without the leading space.
  EXPECT_EQ(TrainedRuns(**tok, *e), (std::vector<std::string>{"Presión arterial alta de forma sostenida.</s>",
                                                              "Dieta, ejercicio y fármacos como IECA.</s>"}));
  auto first = std::find_if(e->labels.begin(), e->labels.end(), [](int64_t l) { return l != -100; });
  ASSERT_NE(first, e->labels.end());
  EXPECT_EQ((*tok)->IdToToken(*first).rfind("\u2581", 0), 0u) << (*tok)->IdToToken(*first);
  // This template puts the system message into the last user turn only, so an earlier
  // prompt is not a prefix of the whole conversation: refused, not mis-masked.
  auto refused = EncodeExample(Conversation(), {tok->get(), &tmpl, false}, "d.jsonl:1");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("d.jsonl:1: chat template 'mistral_v3_hf' does not render the prompt"),
            std::string::npos)
      << refused.status();
}

TEST(Masking, Gemma3TemplateFoldsTheSystemIntoTheFirstUserTurn) {
  Fixture f = Load("llama3");  // any byte-level tokenizer: masking works on the rendered text
  ChatTemplate tmpl = FixtureTemplate("gemma3_hf");
  auto e = EncodeExample(Conversation(), {f.tok.get(), &tmpl, false}, "d.jsonl:1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_NE(e->rendered.find("<start_of_turn>user\nEres un asistente médico.\n\n¿Qué es"), std::string::npos);
  EXPECT_EQ(TrainedRuns(*f.tok, *e),
            (std::vector<std::string>{"Presión arterial alta de forma sostenida.<end_of_turn>\n",
                                      "Dieta, ejercicio y fármacos como IECA.<end_of_turn>\n"}));
}

TEST(Masking, TrainOnInputsTrainsEverything) {
  Fixture f = Load("llama3");
  auto e = EncodeExample(Conversation(), {f.tok.get(), &f.tmpl, true}, "d.jsonl:1");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->labels, e->input_ids);
}

TEST(Formats, AlpacaBecomesAUserAndAssistantTurn) {
  Fixture f = Load("qwen2_5");
  auto ex = ParseExample(
      nlohmann::json::parse(R"({"instruction": "Traduce al inglés:", "input": "contrato", "output": "contract"})"),
      DataFormat::kAuto, "a.jsonl:3");
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->messages.size(), 2u);
  EXPECT_EQ(ex->messages[0].content, "Traduce al inglés:\n\ncontrato");
  auto e = EncodeExample(*ex, {f.tok.get(), &f.tmpl, false}, "a.jsonl:3");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(TrainedRuns(*f.tok, *e), (std::vector<std::string>{"contract<|im_end|>"}));
}

TEST(Formats, TextGetsSpecialTokensAndEos) {
  auto tok = Tokenizer::Load(kDir + "llama2");
  ASSERT_TRUE(tok.ok());
  auto ex = ParseExample(nlohmann::json::parse(R"({"text": "Hola mundo", "lang": "es"})"), DataFormat::kText, "t:1");
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(ex->lang, "es");
  auto e = EncodeExample(*ex, {tok->get(), nullptr, false}, "t:1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->input_ids.front(), 1);
  EXPECT_EQ(e->input_ids.back(), 2);
  EXPECT_EQ(e->labels, e->input_ids);
}

TEST(Formats, MalformedLinesNameFileLineAndField) {
  struct Case {
    std::string json, expect;
  } cases[] = {
      {R"({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]})",
       "t.jsonl:7: field 'messages[1].role' is 'bot'"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "field 'messages[0].content' must be a string"},
      {R"({"messages": [{"role": "user", "content": "hi"}]})", "has no assistant turn"},
      {R"({"instruction": "x"})", "field 'output' is missing"},
      {R"({"prompt": "x"})", "cannot tell the format"},
      {R"({"text": ""})", "field 'text' is empty"},
      {R"({"text": "a", "lang": 1})", "field 'lang' must be a string"},
  };
  for (const auto& c : cases) {
    auto ex = ParseExample(nlohmann::json::parse(c.json), DataFormat::kAuto, "t.jsonl:7");
    ASSERT_FALSE(ex.ok()) << c.json;
    EXPECT_NE(ex.status().message().find(c.expect), std::string::npos) << ex.status();
    EXPECT_NE(ex.status().message().find("t.jsonl:7"), std::string::npos);
  }
  auto wrong = ParseExample(nlohmann::json::parse(R"({"text": "a"})"), DataFormat::kMessages, "t.jsonl:2");
  EXPECT_NE(wrong.status().message().find("field 'messages' is missing"), std::string::npos);
}

}  // namespace
}  // namespace polytune::text
