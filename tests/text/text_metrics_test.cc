// chrF / chrF++ against scores sacreBLEU itself computed (tests/reference/make_chrf_fixtures.py
// runs sacreBLEU's metric code on tests/fixtures/eval/chrf_pairs.jsonl), within 1e-6; the
// normalisation and the classification figures against hand-worked values.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "nlohmann/json.hpp"
#include "polytune/text/text_metrics.h"

namespace polytune::text {
namespace {

const std::string kEval = std::string(POLYTUNE_FIXTURES) + "/eval/";

struct Pair {
  std::string lang, hypothesis, reference;
};

std::vector<Pair> Pairs() {
  std::ifstream in(kEval + "chrf_pairs.jsonl");
  std::vector<Pair> out;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    out.push_back({j.at("lang"), j.at("hypothesis"), j.at("reference")});
  }
  return out;
}

TEST(Chrf, SentenceAndCorpusScoresEqualSacreBleu) {
  const auto pairs = Pairs();
  std::ifstream in(kEval + "chrf.reference.json");
  const auto ref = nlohmann::json::parse(in);
  ASSERT_EQ(ref.at("pairs").size(), pairs.size());
  ASSERT_GE(pairs.size(), 25u);
  const ChrfOptions chrf, chrfpp = ChrfOptions::ChrfPlusPlus();
  std::map<std::string, std::pair<ChrfStats, ChrfStats>> corpus;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto& p = pairs[i];
    SCOPED_TRACE(p.lang + ": " + p.hypothesis + " | " + p.reference);
    ChrfStats s = ChrfSegmentStats(p.hypothesis, p.reference, chrf);
    ChrfStats spp = ChrfSegmentStats(p.hypothesis, p.reference, chrfpp);
    EXPECT_NEAR(ChrfScore(s, chrf), ref["pairs"][i].at("chrf").get<double>(), 1e-6);
    EXPECT_NEAR(ChrfScore(spp, chrfpp), ref["pairs"][i].at("chrfpp").get<double>(), 1e-6);
    for (const std::string& group : {std::string("all"), p.lang}) {
      corpus[group].first.Add(s);
      corpus[group].second.Add(spp);
    }
  }
  EXPECT_EQ(corpus.size(), ref.at("corpus").size());
  for (const auto& [group, stats] : corpus) {
    SCOPED_TRACE(group);
    EXPECT_NEAR(ChrfScore(stats.first, chrf), ref["corpus"].at(group).at("chrf").get<double>(), 1e-6);
    EXPECT_NEAR(ChrfScore(stats.second, chrfpp), ref["corpus"].at(group).at("chrfpp").get<double>(), 1e-6);
  }
}

TEST(Chrf, HandWorkedUnigramCase) {
  // Orders 1..2 only: hyp "ab", ref "abc". 1-grams: hyp 2, ref 3, match 2; 2-grams: hyp 1
  // (ab), ref 2 (ab, bc), match 1. P = (1 + 1) / 2 = 1, R = (2/3 + 1/2) / 2 = 7/12;
  // F2 = 5 * P * R / (4 * P + R) = (35/12) / (55/12) = 7/11.
  ChrfOptions o{2, 0, 2.0};
  EXPECT_NEAR(ChrfScore(ChrfSegmentStats("a b", "abc", o), o), 100.0 * 7 / 11, 1e-12);
  EXPECT_EQ(ChrfScore(ChrfStats{}, o), 0.0);
}

TEST(NormalizeForMatch, FoldsCaseCompatibilityFormsAndWhitespace) {
  EXPECT_EQ(NormalizeForMatch("  Straße\u00a0\tUND  ＡＢＣ "), "strasse und abc");
  EXPECT_EQ(NormalizeForMatch("İSTANBUL"), NormalizeForMatch("i̇stanbul"));
  EXPECT_EQ(NormalizeForMatch("Ⅻ ﬁ"), "xii fi");
  EXPECT_EQ(NormalizeLabel("  «Positive.» "), "positive");
  EXPECT_EQ(NormalizeLabel("¡Sí!"), "sí");
  EXPECT_EQ(NormalizeLabel("n/a"), "n/a");  // inner punctuation stays
}

TEST(Classification, MacroFiguresMatchAHandWorkedConfusionMatrix) {
  // Gold / predicted: pos/pos, pos/neg, neg/neg, neg/neg, neu/pos, neu/"maybe" (outside).
  ClassificationCounts c({"pos", "neg", "neu"});
  c.Add("pos", "pos");
  c.Add("neg", "pos");
  c.Add("neg", "neg");
  c.Add("neg", "neg");
  c.Add("pos", "neu");
  c.Add("maybe", "neu");
  auto f = c.Compute();
  EXPECT_EQ(f.examples, 6);
  EXPECT_DOUBLE_EQ(f.accuracy, 3.0 / 6);
  // pos: tp 1 fp 1 fn 1 -> P 1/2 R 1/2 F 1/2. neg: tp 2 fp 1 fn 0 -> P 2/3 R 1 F 4/5.
  // neu: tp 0 fp 0 fn 2 -> P 0 R 0 F 0.
  EXPECT_DOUBLE_EQ(f.macro_precision, (0.5 + 2.0 / 3 + 0) / 3);
  EXPECT_DOUBLE_EQ(f.macro_recall, (0.5 + 1 + 0) / 3);
  EXPECT_DOUBLE_EQ(f.macro_f1, (0.5 + 0.8 + 0) / 3);
  // The summable form round-trips.
  ClassificationCounts d({"neu", "pos", "neg"});
  d.set_counts(c.counts());
  EXPECT_DOUBLE_EQ(d.Compute().macro_f1, f.macro_f1);
}

}  // namespace
}  // namespace polytune::text
