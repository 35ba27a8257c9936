// Unit tests of the per-example stages: standardisation, language identification, quality
// filters, and the dedup building blocks.
#include <gtest/gtest.h>

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/uscript.h>
#include <unicode/utf8.h>

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "char_props.h"
#include "polytune/dataprep/dedup.h"
#include "polytune/dataprep/language_id.h"
#include "polytune/dataprep/quality.h"
#include "polytune/dataprep/standardize.h"

namespace polytune::dataprep {
namespace {

TEST(Standardize, RepairsInvalidUtf8ByteByByte) {
  std::string out;
  EXPECT_EQ(RepairUtf8("ok \xC3\xA9", &out), 0u);
  EXPECT_EQ(out, "ok \xC3\xA9");
  EXPECT_EQ(RepairUtf8("a\xFF"
                       "b\xC0\xAF"
                       "c\xED\xA0\x80",
                       &out),
            6u);  // stray, overlong, surrogate
  EXPECT_EQ(out,
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD\xEF\xBF\xBD"
            "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_TRUE(IsValidUtf8(out));
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
}

TEST(Standardize, NormalisesProseAndKeepsCode) {
  spec::StandardizeConfig c;
  // "é" as e + combining acute becomes one code point (NFC); NBSP and tabs, controls, BOM,
  // trailing spaces and extra blank lines go; fenced and inline code stay byte for byte.
  const std::string in =
      "\xEF\xBB\xBF"
      "Cafe\xCC\x81\xC2\xA0 con   leche\x07  \n\n\n\nUse `a  =\xC2\xA0"
      "b` here.\n"
      "```\nx  =  1   \n\xEF\xBC\x91\n```\n";
  EXPECT_EQ(Standardize(in, c),
            "Caf\xC3\xA9 con leche\n\nUse `a  =\xC2\xA0"
            "b` here.\n```\nx  =  1   \n\xEF\xBC\x91\n```");
  c.unicode = spec::UnicodeForm::kNfkc;
  c.ascii_digits = true;
  EXPECT_EQ(Standardize("\xEF\xBC\x91\xEF\xBC\x92 y \xD9\xA3", c), "12 y 3");  // fullwidth (NFKC), Arabic-Indic
  c.enabled = false;
  EXPECT_EQ(Standardize(in, c), in);
}

// Standardisation's normal forms equal ICU's normalisation of the whole text, on random mixes
// of text already normalised and of what is not: combining marks in and out of canonical order,
// Hangul jamo, compatibility characters, singletons. (It checks each piece of prose with ICU
// first and normalises only what is not; a faster check of our own from the character table
// was slower than ICU's, which skips everything below U+0300 without a lookup.)
TEST(Standardize, NormalFormsEqualIcusOnRandomText) {
  const std::vector<std::string> pieces = {"a",
                                           "e",
                                           " ",
                                           "\n",
                                           "\xC3\xA9" /* é */,
                                           "e\xCC\x81" /* e + acute */,
                                           "\xCC\x81",
                                           "\xCC\xA3" /* dot below */,
                                           "\xCC\x95" /* ccc 232 */,
                                           "\xE1\x84\x80" /* jamo L */,
                                           "\xE1\x85\xA1" /* jamo V */,
                                           "\xEA\xB0\x80" /* 가 */,
                                           "\xEF\xAC\x81" /* ﬁ */,
                                           "\xE2\x84\xA6" /* Ohm */,
                                           "\xC2\xB2" /* ² */,
                                           "\xEF\xBC\xA1" /* Ａ */,
                                           "\xD0\xB8\xCC\x86" /* и + breve */,
                                           "\xD0\xB9",
                                           "\xE0\xA4\x95\xE0\xA4\xBC" /* क + nukta */,
                                           "\xE6\x9D\xB1",
                                           "\xF0\x9F\x98\x80",
                                           "\xCD\x84" /* U+0344 */,
                                           "\xE0\xBD\xB3" /* U+0F73 */};
  spec::StandardizeConfig config;
  config.remove_control_chars = false;
  config.whitespace = false;
  config.ascii_digits = false;
  std::mt19937 gen(3);
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  const icu::Normalizer2* nfkc = icu::Normalizer2::getNFKCInstance(status);
  ASSERT_TRUE(U_SUCCESS(status));
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text;
    for (size_t k = 0, n = 1 + gen() % 40; k < n; ++k) text += pieces[gen() % (trial % 2 ? 8 : pieces.size())];
    for (const bool compat : {false, true}) {
      config.unicode = compat ? spec::UnicodeForm::kNfkc : spec::UnicodeForm::kNfc;
      std::string expected;
      icu::StringByteSink<std::string> sink(&expected);
      status = U_ZERO_ERROR;
      (compat ? nfkc : nfc)->normalizeUTF8(0, icu::StringPiece(text.data(), text.size()), sink, nullptr, status);
      ASSERT_TRUE(U_SUCCESS(status));
      ASSERT_EQ(Standardize(text, config), expected) << (compat ? "NFKC of " : "NFC of ") << text;
    }
  }
}

TEST(CharProps, TheTableGivesIcusAnswersForEveryCodePoint) {
  int checked = 0;
  for (UChar32 c = 0; c <= 0x10FFFF; c += c < 0x10000 ? 1 : 97) {
    const CharProps p = PropsOf(c);
    UErrorCode status = U_ZERO_ERROR;
    const UScriptCode script = uscript_getScript(c, &status);
    ASSERT_EQ(p.white_space, static_cast<bool>(u_isUWhiteSpace(c))) << std::hex << c;
    ASSERT_EQ(p.alpha, static_cast<bool>(u_isalpha(c))) << std::hex << c;
    ASSERT_EQ(p.alnum, static_cast<bool>(u_isalnum(c))) << std::hex << c;
    ASSERT_EQ(p.char_type, u_charType(c)) << std::hex << c;
    ASSERT_EQ(static_cast<int>(p.script), static_cast<int>(script)) << std::hex << c;
    ++checked;
  }
  EXPECT_GT(checked, 70000);
}

// The script shortcut as first written: ICU per character, every character looked at. The
// production version reads ASCII eight bytes at a time and stops once no script can win.
std::string ReferenceLanguageFromScript(const std::string& text) {
  static const std::vector<std::pair<UScriptCode, std::string>> kOne = {
      {USCRIPT_HANGUL, "ko"},   {USCRIPT_THAI, "th"},      {USCRIPT_GREEK, "el"},    {USCRIPT_HEBREW, "he"},
      {USCRIPT_GEORGIAN, "ka"}, {USCRIPT_ARMENIAN, "hy"},  {USCRIPT_LAO, "lo"},      {USCRIPT_KHMER, "km"},
      {USCRIPT_MYANMAR, "my"},  {USCRIPT_SINHALA, "si"},   {USCRIPT_TAMIL, "ta"},    {USCRIPT_TELUGU, "te"},
      {USCRIPT_KANNADA, "kn"},  {USCRIPT_MALAYALAM, "ml"}, {USCRIPT_GUJARATI, "gu"}, {USCRIPT_GURMUKHI, "pa"},
      {USCRIPT_ORIYA, "or"}};
  int letters = 0, han = 0, kana = 0;
  std::map<UScriptCode, int> counts;
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  for (int32_t i = 0, n = static_cast<int32_t>(text.size()); i < n;) {
    UChar32 c;
    U8_NEXT(s, i, n, c);
    if (c < 0 || !u_isalpha(c)) continue;
    ++letters;
    UErrorCode err = U_ZERO_ERROR;
    const UScriptCode script = uscript_getScript(c, &err);
    han += script == USCRIPT_HAN;
    kana += script == USCRIPT_HIRAGANA || script == USCRIPT_KATAKANA;
    ++counts[script];
  }
  if (letters == 0) return "";
  if (2 * (han + kana) > letters) return kana > 0 ? "ja" : "zh";
  for (const auto& [script, code] : kOne)
    if (2 * counts[script] > letters) return code;
  return "";
}

TEST(LanguageId, ScriptShortcutEqualsThePlainCount) {
  // Chunks of Latin, accented Latin, Cyrillic, Greek, Hangul, Han, kana, Thai and non-letters,
  // mixed in proportions around the one-half line, from a few bytes to a few kilobytes.
  const std::vector<std::string> chunks = {
      "the quick fox ", "Öl café ", "Привет мир ", "Καλημέρα ", "안녕하세요 ", "北京欢迎你", "ひらがなカタカナ",
      "สวัสดี ",          "12345 ",   ".,;!? ",      "x"};
  std::mt19937 gen(11);
  std::map<std::string, int> outcomes;
  for (int trial = 0; trial < 4000; ++trial) {
    std::string text;
    const size_t pieces = 1 + gen() % 300;
    const size_t a = gen() % chunks.size(), b = gen() % chunks.size();
    for (size_t k = 0; k < pieces; ++k) text += chunks[gen() % 3 == 0 ? gen() % chunks.size() : (gen() % 2 ? a : b)];
    const std::string expected = ReferenceLanguageFromScript(text);
    ASSERT_EQ(LanguageFromScript(text), expected) << text;
    ++outcomes[expected];
  }
  for (const char* code : {"", "ko", "el", "zh", "ja", "th"}) EXPECT_GE(outcomes[code], 20) << code;
}

TEST(LanguageId, ScriptShortcutsAndCodes) {
  EXPECT_EQ(LanguageFromScript("안녕하세요"), "ko");
  EXPECT_EQ(LanguageFromScript("東京へ行きます"), "ja");
  EXPECT_EQ(LanguageFromScript("北京欢迎你"), "zh");
  EXPECT_EQ(LanguageFromScript("สวัสดีครับ"), "th");
  EXPECT_EQ(LanguageFromScript("Καλημέρα"), "el");
  EXPECT_EQ(LanguageFromScript("Привет"), "");  // Cyrillic: many languages, CLD2 decides
  EXPECT_EQ(NormalizeLanguageCode("iw"), "he");
  EXPECT_EQ(NormalizeLanguageCode("zh-Hant"), "zh");
  EXPECT_EQ(NormalizeLanguageCode("un"), "");
  EXPECT_TRUE(IsSpacelessLanguage("ja"));
  EXPECT_FALSE(IsSpacelessLanguage("ko"));
}

TEST(LanguageId, AllowListMapsMalayToIndonesian) {
  // Indonesian text CLD2 often calls Malay; with only Indonesian allowed it is Indonesian.
  const std::string text = "Saya akan pergi ke pasar besok pagi untuk membeli sayur.";
  spec::LanguageConfig open;
  LanguageIdentifier any(open);
  const LanguageGuess plain = any.Identify(text);
  ASSERT_TRUE(plain.code == "id" || plain.code == "ms") << plain.code;
  spec::LanguageConfig allow;
  allow.languages = {"id", "es"};
  const LanguageGuess g = LanguageIdentifier(allow).Identify(text);
  EXPECT_EQ(g.code, "id");
  EXPECT_GT(g.confidence, 0.5);
  EXPECT_EQ(LanguageIdentifier(allow)
                .Identify("Der Patient wurde gestern aus dem Krankenhaus entlassen und "
                          "soll in zwei Wochen zur Kontrolle kommen.")
                .code,
            "de");  // a reliable answer outside the list stays what it is (and is dropped)
}

TEST(LanguageId, LongTextIsIdentifiedFromEvenlySpacedWindows) {
  const std::string english = "You are a helpful assistant. Answer briefly and politely.\n";
  std::string spanish;
  while (spanish.size() < 4000)
    spanish += "El paciente ingresó por la mañana con dolor abdominal y fue dado de alta ayer. ";
  const std::string text = english + spanish + "Fin del informe.";
  EXPECT_EQ(SampleForIdentification("corto", 1024), "corto");
  EXPECT_EQ(SampleForIdentification(text, 0), text);
  const std::string sample = SampleForIdentification(text, 1024);
  EXPECT_LE(sample.size(), 1024u + 4 * 4);  // windows grow only to finish a UTF-8 character
  EXPECT_GE(sample.size(), 1024u - 4 * 16);
  EXPECT_TRUE(IsValidUtf8(sample));
  EXPECT_EQ(sample.rfind(english.substr(0, 40), 0), 0u) << "the first window starts the text";
  EXPECT_EQ(sample.substr(sample.size() - 16), "Fin del informe.") << "the last window ends it";
  // Windows from the whole text, not its first kilobyte, decide: mostly Spanish, so Spanish.
  spec::LanguageConfig config;
  EXPECT_EQ(LanguageIdentifier(config).Identify(text).code, "es");
  config.sample_bytes = 0;
  EXPECT_EQ(LanguageIdentifier(config).Identify(text).code, "es");
}

TEST(Quality, RulesByLanguageAndOverrides) {
  const QualityRules en = DefaultQualityRules("en");
  EXPECT_EQ(FailedQualityRule("", en, false), "min_units");
  EXPECT_EQ(FailedQualityRule("Hola, ¿qué tal?", en, false), "");
  EXPECT_EQ(FailedQualityRule("$$$ ### @@@ %%% &&&", en, false), "max_symbol_ratio");
  std::string spam;
  for (int i = 0; i < 30; ++i) spam += "buy cheap pills now ";
  EXPECT_EQ(FailedQualityRule(spam, en, false), "max_top_2gram_fraction");
  std::string lines;
  for (int i = 0; i < 20; ++i) lines += "Click here to subscribe to our newsletter today\n";
  EXPECT_EQ(FailedQualityRule(lines, en, false), "max_duplicate_line_fraction");
  // Chinese counts characters: 2 of them pass the default minimum, 1 does not.
  const QualityRules zh = DefaultQualityRules("zh");
  EXPECT_EQ(FailedQualityRule("你好", zh, true), "");
  EXPECT_EQ(FailedQualityRule("好", zh, true), "min_units");
  spec::QualityConfig config;
  config.defaults["min_units"] = 3;
  config.languages["zh"]["min_units"] = 5;
  EXPECT_EQ(ResolveQualityRules(config, "en").min_units, 3);
  EXPECT_EQ(ResolveQualityRules(config, "zh").min_units, 5);
  EXPECT_EQ(ResolveQualityRules(config, "de").max_mean_word_length, 20);  // built-in per-language default kept
}

TEST(Dedup, MatchNormalisationFoldsCaseTurkishIAndPunctuation) {
  EXPECT_EQ(MatchNormalize("Hello,   WORLD!"), "hello world");
  EXPECT_EQ(MatchNormalize("İSTANBUL'da ışık"), MatchNormalize("istanbul da IŞIK"));
  EXPECT_EQ(MatchNormalize("Straße"), "strasse");
  // ASCII text takes a one-pass path; one non-ASCII letter sends the same text through ICU's
  // case folding and the general loop, which must agree with it.
  std::mt19937 gen(9);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string ascii;
    for (size_t k = 0, n = gen() % 60; k < n; ++k) ascii.push_back(static_cast<char>(gen() % 128));
    const std::string fast = MatchNormalize(ascii);
    ASSERT_EQ(MatchNormalize(ascii + " \xC3\xA9"), fast.empty() ? "\xC3\xA9" : fast + " \xC3\xA9") << ascii;
  }
  EXPECT_EQ(HashText("a b"), HashText("a b"));
  EXPECT_FALSE(HashText("a b") == HashText("a c"));
}

TEST(Dedup, ShinglesJaccardAndLshParameters) {
  const auto a = Shingles("the quick brown fox jumps over the lazy dog", false, 3);
  const auto b = Shingles("the quick brown fox jumps over the lazy cat", false, 3);
  EXPECT_EQ(a.size(), 7u);
  EXPECT_NEAR(Jaccard(a, b), 6.0 / 8.0, 1e-12);
  EXPECT_EQ(Shingles("ab", false, 5).size(), 1u);  // shorter than a shingle: itself
  EXPECT_EQ(Shingles("東京 都", true, 2).size(), 2u);
  const LshParams p = ChooseLshParams(0.8, 128);
  EXPECT_LE(p.permutations(), 128);
  // The S-curve crosses near the threshold: pairs well above it are almost always candidates,
  // pairs well below almost never.
  EXPECT_EQ(p.bands, 14);
  EXPECT_EQ(p.rows, 9);
  EXPECT_GT(CandidateProbability(0.9, p), 0.99);
  EXPECT_GT(CandidateProbability(0.8, p), 0.85);
  EXPECT_LT(CandidateProbability(0.5, p), 0.05);
}

// The plain definition ChooseLshParams is computed faster than: every bands x rows, each area
// by the midpoint rule (200 steps) over CandidateProbability.
LshParams ChooseLshParamsByDefinition(double threshold, int max_permutations) {
  auto area = [](double a, double b, const std::function<double(double)>& f) {
    double sum = 0;
    for (int i = 0; i < 200; ++i) sum += f(a + (i + 0.5) * (b - a) / 200) * (b - a) / 200;
    return sum;
  };
  LshParams best;
  double best_error = 1e300;
  for (int bands = 1; bands <= max_permutations; ++bands) {
    for (int rows = 1; bands * rows <= max_permutations; ++rows) {
      const LshParams p{bands, rows};
      const double error = 0.1 * area(0, threshold, [&](double s) { return CandidateProbability(s, p); }) +
                           0.9 * area(threshold, 1, [&](double s) { return 1 - CandidateProbability(s, p); });
      if (error < best_error) {
        best_error = error;
        best = p;
      }
    }
  }
  return best;
}

TEST(Dedup, LshParametersMatchTheirDefinition) {
  for (const double threshold : {0.5, 0.7, 0.8, 0.9, 0.95}) {
    for (const int permutations : {16, 64, 128, 256}) {
      const LshParams fast = ChooseLshParams(threshold, permutations);
      const LshParams slow = ChooseLshParamsByDefinition(threshold, permutations);
      EXPECT_EQ(fast.bands, slow.bands) << threshold << " " << permutations;
      EXPECT_EQ(fast.rows, slow.rows) << threshold << " " << permutations;
    }
  }
}

// One permutation hashing with densification is an unbiased estimate of Jaccard similarity at
// every size, from texts with fewer shingles than bins (most bins densified) to texts with many
// more: averaged over many pairs, the share of equal positions is the true similarity.
TEST(Dedup, OnePermutationSignaturesAreUnbiasedAtEverySize) {
  std::mt19937_64 gen(17);
  const MinHasher hasher(126, 3);
  for (const size_t n : {5, 20, 60, 200, 1000}) {
    for (const double target : {0.3, 0.6, 0.8, 0.95}) {
      double agreement = 0, truth = 0;
      const int pairs = 300;
      for (int p = 0; p < pairs; ++p) {
        std::vector<uint64_t> a(n);
        for (auto& x : a) x = gen();
        // Replace m of b's shingles: J = (n - m) / (n + m).
        const size_t m = static_cast<size_t>(std::lround(n * (1 - target) / (1 + target)));
        std::vector<uint64_t> b = a;
        for (size_t i = 0; i < m; ++i) b[i] = gen();
        const auto sa = hasher.Signature(a), sb = hasher.Signature(b);
        int equal = 0;
        for (size_t i = 0; i < sa.size(); ++i) equal += sa[i] == sb[i];
        agreement += equal / 126.0;
        truth += static_cast<double>(n - m) / static_cast<double>(n + m);
      }
      // 300 pairs x 126 positions: the standard error of the mean is below 0.01.
      EXPECT_NEAR(agreement / pairs, truth / pairs, 0.03) << n << " shingles, Jaccard " << truth / pairs;
    }
  }
  EXPECT_EQ(hasher.Signature({}), std::vector<uint32_t>(126, 0xFFFFFFFFu));
}

TEST(Dedup, MinHashEstimatesJaccardAndLshFindsCandidates) {
  std::string base;
  for (int i = 0; i < 200; ++i) base += "w" + std::to_string(i) + " ";
  std::string near = base;
  near.replace(near.find("w50 "), 4, "x50 ");
  const auto sa = Shingles(base, false, 5), sb = Shingles(near, false, 5);
  const double truth = Jaccard(sa, sb);
  MinHasher hasher(256, 7);
  const auto ga = hasher.Signature(sa), gb = hasher.Signature(sb);
  int equal = 0;
  for (size_t i = 0; i < ga.size(); ++i) equal += ga[i] == gb[i];
  EXPECT_NEAR(equal / 256.0, truth, 0.08);  // ~3 standard errors at J ~ 0.95
  // The pipeline signs the unsorted hashes, repeats and all: the same signature.
  const std::string repeated = base + base;
  EXPECT_EQ(hasher.Signature(ShingleHashes(repeated, false, 5)), hasher.Signature(Shingles(repeated, false, 5)));
  EXPECT_GT(ShingleHashes(repeated, false, 5).size(), Shingles(repeated, false, 5).size());
  const LshParams p = ChooseLshParams(0.8, 256);
  LshIndex index(p);
  index.Insert(0, ga);
  std::string other;
  for (int i = 0; i < 200; ++i) other += "z" + std::to_string(i) + " ";
  index.Insert(1, hasher.Signature(Shingles(other, false, 5)));
  EXPECT_EQ(index.Candidates(gb), std::vector<uint32_t>{0});
}

}  // namespace
}  // namespace polytune::dataprep
