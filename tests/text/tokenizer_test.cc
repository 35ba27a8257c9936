// Tokenizer parity against vectors made independently with transformers.js' tokenizers
// (tests/reference/make_tokenizer_vectors.mjs) on real tokenizer.json files.
#include "polytune/text/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>

#include "nlohmann/json.hpp"

namespace polytune::text {
namespace {

const std::string kDir = std::string(POLYTUNE_FIXTURES) + "/tokenizers/";

class TokenizerParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerParity, IdsAndDecodeMatchHuggingFace) {
  auto tok = Tokenizer::Load(kDir + GetParam());
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::ifstream in(kDir + GetParam() + "/vectors.json");
  nlohmann::json vectors = nlohmann::json::parse(in);
  ASSERT_GT(vectors.size(), 20u);
  for (const auto& v : vectors) {
    const std::string text = v["text"].get<std::string>();
    EXPECT_EQ((*tok)->Encode(text, false), v["ids"].get<std::vector<int64_t>>()) << GetParam() << ": " << text;
    EXPECT_EQ((*tok)->Encode(text, true), v["ids_with_special"].get<std::vector<int64_t>>())
        << GetParam() << ": " << text;
    EXPECT_EQ((*tok)->Decode(v["ids"].get<std::vector<int64_t>>()), v["decoded"].get<std::string>())
        << GetParam() << ": " << text;
  }
}

INSTANTIATE_TEST_SUITE_P(Real, TokenizerParity, ::testing::Values("gpt2", "llama2", "llama3", "qwen2_5"));

TEST(Tokenizer, SpecialTokenIdsFromConfig) {
  auto llama2 = Tokenizer::Load(kDir + "llama2");
  ASSERT_TRUE(llama2.ok());
  EXPECT_EQ((*llama2)->bos_id(), 1);
  EXPECT_EQ((*llama2)->eos_id(), 2);
  auto qwen = Tokenizer::Load(kDir + "qwen2_5");
  ASSERT_TRUE(qwen.ok());
  EXPECT_EQ((*qwen)->eos_id(), (*qwen)->TokenToId("<|im_end|>"));
  EXPECT_EQ((*qwen)->pad_id(), 151643);
  EXPECT_FALSE((*qwen)->chat_template().empty());
}

TEST(Tokenizer, UnsupportedComponentIsNamed) {
  auto t = Tokenizer::FromJson(R"({"model": {"type": "WordPiece", "vocab": {}}})", "{}", "tok.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("WordPiece"), std::string::npos) << t.status();
  auto p = Tokenizer::FromJson(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                   "pre_tokenizer": {"type": "BertPreTokenizer"}})",
                               "{}", "tok.json");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("pre_tokenizer type 'BertPreTokenizer'"), std::string::npos) << p.status();
}

TEST(Tokenizer, AddedTokensStripNeighbouringSpacesWhenAsked) {
  // Byte-level-free toy model: every character is a token.
  const std::string model = R"("model": {"type": "BPE", "vocab": {" ": 0, "a": 1, "b": 2}, "merges": []})";
  const std::string added = R"("added_tokens": [
      {"id": 10, "content": "<L>", "special": true, "lstrip": true, "rstrip": false, "single_word": false, "normalized": false},
      {"id": 11, "content": "<R>", "special": false, "lstrip": false, "rstrip": true, "single_word": false, "normalized": false},
      {"id": 12, "content": "ab", "special": false, "lstrip": false, "rstrip": false, "single_word": true, "normalized": false}])";
  auto t = Tokenizer::FromJson("{" + model + "," + added + "}", "{}", "toy");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Encode("a  <L>b"), (std::vector<int64_t>{1, 10, 2})) << "lstrip absorbs the spaces before";
  EXPECT_EQ((*t)->Encode("a<R>  b"), (std::vector<int64_t>{1, 11, 2})) << "rstrip absorbs the spaces after";
  EXPECT_EQ((*t)->Encode("ab ab"), (std::vector<int64_t>{12, 0, 12})) << "non-special added tokens match too";
  EXPECT_EQ((*t)->Encode("aab"), (std::vector<int64_t>{1, 1, 2})) << "single_word: not inside a word";
}

TEST(Tokenizer, MergesAsPairsEqualMergesAsStrings) {
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "ab": 2, "abab": 3})";
  auto s = Tokenizer::FromJson(
      std::string(R"({"model": {"type": "BPE", )") + vocab + R"(, "merges": ["a b", "ab ab"]}})", "{}", "s");
  auto p = Tokenizer::FromJson(
      std::string(R"({"model": {"type": "BPE", )") + vocab + R"(, "merges": [["a", "b"], ["ab", "ab"]]}})", "{}", "p");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*s)->Encode("ababa"), (std::vector<int64_t>{3, 0}));
  EXPECT_EQ((*p)->Encode("ababa"), (*s)->Encode("ababa"));
}

// Malformed files found by fuzzing: each is an error naming the file, never a crash.
TEST(Tokenizer, WronglyShapedFilesAreErrorsNamingTheFile) {
  struct Case {
    std::string json, expect;
  } cases[] = {
      {R"({"model": {"vocab": {"a": 99999999999}}})", "vocab['a'] must be an id in [0, 16777215]"},
      {R"({"model": {"vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split"}})",
       "needs pattern.Regex or pattern.String"},
      {R"({"model": {"vocab": {"a": 0}}, "post_processor": {"type": "TemplateProcessing", "single": [{"X": 1}]}})",
       "unexpected structure"},
      {R"({"model": {"vocab": {"a": 0}}, "added_tokens": [{"content": 5, "id": 1}]})", "unexpected structure"},
      {R"({"model": {"vocab": {"a": 0}}, "added_tokens": [{"content": "x", "id": 123456789012}]})",
       "added token id 123456789012 is outside"},
      {R"({"model": {"vocab": {"a": 1e999}}})", "invalid JSON"},
  };
  for (const auto& c : cases) {
    auto t = Tokenizer::FromJson(c.json, "{}", "m/tokenizer.json");
    ASSERT_FALSE(t.ok()) << c.json;
    EXPECT_NE(t.status().message().find("m/tokenizer.json: "), std::string::npos) << t.status();
    EXPECT_NE(t.status().message().find(c.expect), std::string::npos) << c.json << " -> " << t.status();
  }
}

}  // namespace
}  // namespace polytune::text
