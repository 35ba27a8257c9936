#include "polytune/text/bpe_trainer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "polytune/text/tokenizer.h"

namespace polytune::text {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string t = "/tmp/polytune-bpe-XXXXXX";
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(BpeTrainer, LearnsAReversibleTokenizerWithinTheVocabulary) {
  auto texts = ReadCorpusTexts(std::string(POLYTUNE_EXAMPLES) + "/data/instructions_train.jsonl");
  ASSERT_TRUE(texts.ok()) << texts.status();
  EXPECT_GT(texts->size(), 100u);
  TempDir dir;
  BpeTrainOptions o;
  o.vocab_size = 700;
  ASSERT_TRUE(TrainByteLevelBpe(*texts, o, dir.path()).ok());
  auto tok = Tokenizer::Load(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_LE((*tok)->vocab_size(), 700);
  EXPECT_GT((*tok)->vocab_size(), 600) << "the corpus supports several hundred merges";
  size_t bytes = 0, tokens = 0;
  for (const auto& t : *texts) {
    auto ids = (*tok)->Encode(t);
    EXPECT_EQ((*tok)->Decode(ids), t);
    bytes += t.size();
    tokens += ids.size();
  }
  EXPECT_LT(static_cast<double>(tokens) / bytes, 0.6) << "merges should compress the training text";
  // Special tokens and template.
  EXPECT_EQ((*tok)->IdToToken(*(*tok)->bos_id()), "<|begin_of_text|>");
  EXPECT_EQ((*tok)->IdToToken(*(*tok)->eos_id()), "<|eot_id|>");
  EXPECT_FALSE((*tok)->chat_template().empty());
  EXPECT_EQ((*tok)->Encode("hola", true).front(), *(*tok)->bos_id());
  EXPECT_EQ((*tok)->Encode("<|eot_id|>"), std::vector<int64_t>{*(*tok)->eos_id()});

  // Deterministic: a second run writes the same tokenizer.
  TempDir again;
  ASSERT_TRUE(TrainByteLevelBpe(*texts, o, again.path()).ok());
  auto tok2 = Tokenizer::Load(again.path());
  for (const auto& t : *texts) EXPECT_EQ((*tok2)->Encode(t), (*tok)->Encode(t));
}

TEST(BpeTrainer, RejectsTooSmallVocabulary) {
  TempDir dir;
  BpeTrainOptions o;
  o.vocab_size = 100;
  absl::Status st = TrainByteLevelBpe({"abc"}, o, dir.path());
  EXPECT_NE(st.message().find("at least 262"), std::string::npos) << st;
}

}  // namespace
}  // namespace polytune::text
