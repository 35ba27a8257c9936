#include "polytune/engine/token_dataset.h"

#include "polytune/engine/llama_model.h"

#include <gtest/gtest.h>

#include <map>

#include <set>

#include "polytune/common/file_util.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

std::string Write(const testing::TempDir& dir, const std::string& text) {
  const std::string path = dir / "data.jsonl";
  EXPECT_TRUE(WriteFileAtomic(path, text).ok());
  return path;
}

TEST(TokenDataset, LoadsLabelsLanguagesAndTruncates) {
  testing::TempDir dir;
  auto d = LoadTokenDataset(Write(dir,
                                  "{\"input_ids\": [1,2,3,4], \"labels\": [-100,2,3,4], \"lang\": \"es\"}\n\n"
                                  "{\"input_ids\": [5,6,7,8,9,10]}\n"),
                            5, 16);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->examples.size(), 2u);
  EXPECT_EQ(d->languages, (std::vector<std::string>{"es", "und"}));
  EXPECT_EQ(d->examples[0].TargetCount(), 3);
  EXPECT_EQ(d->examples[1].input_ids.size(), 5u);
  EXPECT_EQ(d->examples[1].labels, d->examples[1].input_ids);
  EXPECT_EQ(d->examples[1].language, 1);
}

TEST(TokenDataset, MalformedLinesNameFileLineAndField) {
  testing::TempDir dir;
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"{\"input_ids\": [1]}\n{\"input_ids\": [1,2\n", "data.jsonl:2: invalid JSON"},
      {"{\"input_ids\": [1, \"x\"]}\n", "data.jsonl:1: field 'input_ids' element 1 is not an integer"},
      {"{\"input_ids\": [1, 2], \"labels\": [1, 40]}\n", "field 'labels' element 1 = 40 is outside the vocabulary"},
      {"{\"input_ids\": [1, 99]}\n", "field 'input_ids' element 1 = 99 is outside the vocabulary"},
      {"{\"input_ids\": [1, 2], \"labels\": [1]}\n", "field 'labels' has 1 entries"},
      {"{\"input_ids\": [1], \"lang\": 3}\n", "field 'lang'"},
      {"{\"text\": \"hi\"}\n", "field 'input_ids' is missing"},
      {"{\"labels\": [1]}\n", "field 'input_ids' is missing"},
      {"", "no examples"},
  };
  for (const auto& c : cases) {
    auto d = LoadTokenDataset(Write(dir, c.text), 16, 32);
    ASSERT_FALSE(d.ok()) << c.text;
    EXPECT_NE(d.status().message().find(c.expect), std::string::npos) << d.status();
  }
}

TEST(BatchSchedule, EachEpochVisitsEveryExampleOnceInASeededOrder) {
  BatchSchedule a(10, 4, 42), b(10, 4, 42), c(10, 4, 43);
  std::set<int64_t> epoch0, epoch1;
  bool differs = false;
  for (int64_t p = 0; p < 10; ++p) {
    epoch0.insert(a.ExampleAt(p));
    epoch1.insert(a.ExampleAt(10 + p));
    EXPECT_EQ(a.ExampleAt(p), b.ExampleAt(p));
    differs |= a.ExampleAt(p) != c.ExampleAt(p);
  }
  EXPECT_EQ(epoch0.size(), 10u);
  EXPECT_EQ(epoch1.size(), 10u);
  EXPECT_TRUE(differs);
  EXPECT_EQ(a.StepsForEpochs(2), 5);
  EXPECT_DOUBLE_EQ(a.EpochAt(5), 2.0);
}

TEST(Collate, PadsInputsWithZeroAndLabelsWithIgnore) {
  TokenDataset d;
  d.examples.push_back({{1, 2, 3}, {1, 2, 3}, 0});
  d.examples.push_back({{4}, {-100}, 0});
  Batch b = Collate(d, {0, 1}, {7, 8});
  EXPECT_EQ(b.input_ids.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(b.input_ids[1][1].item<int64_t>(), 0);
  EXPECT_EQ(b.labels[1][2].item<int64_t>(), -100);
  EXPECT_EQ(b.tokens, 4);
  EXPECT_EQ(b.labels[0][0].item<int64_t>(), -100) << "the first position is never a target";
  EXPECT_EQ(b.token_examples, (std::vector<int64_t>{7, 7, 7, 8, -1, -1}));
  EXPECT_FALSE(b.segment_ids.defined());
}

TEST(Collate, PackingPlacesExamplesInFewRowsWithRestartingPositions) {
  TokenDataset d;
  d.examples.push_back({{1, 2, 3}, {1, 2, 3}, 0});
  d.examples.push_back({{4, 5, 6, 7}, {4, 5, 6, 7}, 0});
  d.examples.push_back({{8, 9}, {8, 9}, 0});
  Batch b = Collate(d, {0, 1, 2}, {10, 11, 12}, /*pack_len=*/5);
  // Longest first: [ex1] and [ex0, ex2] (3 + 2 = 5 tokens).
  ASSERT_EQ(b.rows, 2);
  EXPECT_TRUE(b.input_ids[1].equal(at::tensor({1, 2, 3, 8, 9}, at::kLong)));
  EXPECT_TRUE(b.position_ids[1].equal(at::tensor({0, 1, 2, 0, 1}, at::kLong)));
  EXPECT_TRUE(b.segment_ids[1].equal(at::tensor({0, 0, 0, 2, 2}, at::kLong)));
  EXPECT_TRUE(b.labels[1].equal(at::tensor({-100, 2, 3, -100, 9}, at::kLong)));
  EXPECT_TRUE(b.segment_ids[0].equal(at::tensor({1, 1, 1, 1, -1}, at::kLong)));
  EXPECT_EQ(b.tokens, 9);
}

TEST(Collate, PackingBalancesRowsSoPaddingStaysSmall) {
  TokenDataset d;
  for (int64_t len : {60, 90, 70, 80, 50, 100, 65, 40}) d.examples.push_back({std::vector<int64_t>(len, 3), {}, 0});
  for (auto& e : d.examples) e.labels = e.input_ids;
  Batch b = Collate(d, {0, 1, 2, 3, 4, 5, 6, 7}, {0, 1, 2, 3, 4, 5, 6, 7}, /*pack_len=*/512);
  ASSERT_EQ(b.rows, 2);  // 555 tokens need two rows of 512
  EXPECT_EQ(b.tokens, 555);
  EXPECT_LE(b.input_ids.size(1), 290) << "rows are balanced, not one full and one nearly empty";
  // Every example appears exactly once, whole, with positions restarting at 0.
  std::map<int64_t, int64_t> seen;
  for (int64_t r = 0; r < b.rows; ++r)
    for (int64_t t = 0; t < b.input_ids.size(1); ++t)
      if (int64_t s = b.segment_ids[r][t].item<int64_t>(); s >= 0) {
        EXPECT_EQ(b.position_ids[r][t].item<int64_t>(), seen[s]);
        ++seen[s];
      }
  ASSERT_EQ(seen.size(), 8u);
  for (const auto& [e, n] : seen) EXPECT_EQ(n, static_cast<int64_t>(d.examples[e].input_ids.size()));
}

}  // namespace
}  // namespace polytune::engine
