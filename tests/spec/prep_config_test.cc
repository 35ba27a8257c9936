#include "polytune/spec/prep_config.h"

#include <gtest/gtest.h>

namespace polytune::spec {
namespace {

TEST(PrepConfig, EmptyMeansEveryDefault) {
  auto c = ParsePrepConfig("", "prep.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->standardize.enabled);
  EXPECT_EQ(c->standardize.unicode, UnicodeForm::kNfc);
  EXPECT_TRUE(c->language.languages.empty());
  EXPECT_EQ(c->dedup.threshold, 0.8);
  EXPECT_EQ(c->pii.types, PiiTypeNames());
  EXPECT_FALSE(c->strict);
}

TEST(PrepConfig, ParsesEveryStageAndRoundTripsCanonically) {
  const std::string yaml = R"(
standardize: {unicode: nfkc, invalid_utf8: drop, ascii_digits: true}
language:
  languages: [ES, de, id]
  min_confidence: 0.7
  declared: drop
  sample_bytes: 2048
quality:
  defaults: {min_units: 3}
  languages:
    zh: {min_units: 8, max_symbol_ratio: 0.1}
dedup: {near: false, threshold: 0.9, word_ngram: 4}
pii:
  types: [email, iban]
  regions: [mx, ar]
  placeholders: {email: "[EMAIL]"}
  patterns:
    - {name: employee, regex: "EMP-[0-9]{6}"}
strict: true
)";
  auto c = ParsePrepConfig(yaml, "prep.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->standardize.unicode, UnicodeForm::kNfkc);
  EXPECT_EQ(c->standardize.invalid_utf8, InvalidUtf8::kDrop);
  EXPECT_EQ(c->language.languages, (std::vector<std::string>{"es", "de", "id"}));
  EXPECT_EQ(c->language.declared, DeclaredLanguage::kDrop);
  EXPECT_EQ(c->language.sample_bytes, 2048);
  EXPECT_EQ(c->quality.defaults.at("min_units"), 3);
  EXPECT_EQ(c->quality.languages.at("zh").at("max_symbol_ratio"), 0.1);
  EXPECT_FALSE(c->dedup.near);
  EXPECT_EQ(c->dedup.word_ngram, 4);
  EXPECT_EQ(c->pii.regions, (std::vector<std::string>{"MX", "AR"}));
  ASSERT_EQ(c->pii.patterns.size(), 1u);
  EXPECT_EQ(c->pii.patterns[0].placeholder, "<EMPLOYEE>");
  EXPECT_TRUE(c->strict);
  const std::string canonical = ToCanonicalYaml(*c);
  auto again = ParsePrepConfig(canonical, "canonical");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << canonical;
  EXPECT_TRUE(*again == *c);
  EXPECT_EQ(ToCanonicalYaml(*again), canonical);
}

TEST(PrepConfig, ErrorsNameTheLineAndTheKey) {
  struct Case {
    std::string yaml, expected;
  };
  const std::vector<Case> cases = {
      {"dedup:\n  treshold: 0.8\n", "prep.yaml:2: 'dedup.treshold' is not a known key"},
      {"language:\n  languages: [spanish]\n", "'language.languages' must hold ISO 639-1 codes"},
      {"quality:\n  languages:\n    es: {min_words: 3}\n", "'quality.languages.es.min_words' is not a known key"},
      {"pii:\n  types: [email, ssn]\n", "'pii.types' has unknown type 'ssn'"},
      {"pii:\n  patterns:\n    - {name: x, regex: \"(\"}\n", "'pii.patterns[0].regex' is not valid RE2"},
      {"dedup: {threshold: 1.5}\n", "'dedup.threshold' must be in (0, 1]"},
      {"standardize: {unicode: nfd}\n", "'standardize.unicode' must be one of nfc, nfkc, none"},
      {"strict: maybe\n", "'strict' must be true or false"},
      {"language: {sample_bytes: 100}\n", "'language.sample_bytes' must be 0 (all of the text) or at least 256"},
      {"dedup: {near: true}\ndedup: {near: false}\n", "is given twice"},
  };
  for (const auto& c : cases) {
    auto r = ParsePrepConfig(c.yaml, "prep.yaml");
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_NE(std::string(r.status().message()).find(c.expected), std::string::npos)
        << r.status().message() << "\nwanted: " << c.expected;
  }
}

}  // namespace
}  // namespace polytune::spec
