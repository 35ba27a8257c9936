// The pipeline's JSONL reader and writer against nlohmann, whose results they must equal:
// every fixture line, generated values, and the corners of the grammar. Where the fast reader
// declines, nlohmann decides (the pipeline's fallback), so what is checked here is that an
// accepted line means exactly what nlohmann reads, and a line nlohmann refuses is declined.
#include "json_line.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "polytune/dataprep/standardize.h"
#include "support/same_json.h"

namespace polytune::dataprep {
namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

using polytune::testing::SameJson;

// Returns whether the fast reader took the line; fails the test when it disagrees with nlohmann.
bool Agrees(const std::string& text) {
  const Json expected = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  Json got;
  const bool taken = ParseJsonLine(text, &got);
  if (expected.is_discarded()) {
    EXPECT_FALSE(taken) << "nlohmann refuses, the fast reader took: " << text;
    return false;
  }
  if (taken)
    EXPECT_TRUE(SameJson(got, expected)) << text << "\nfast: " << got.dump() << "\nnlohmann: " << expected.dump();
  return taken;
}

std::string Dumped(const Json& j) {
  std::string out;
  AppendJson(j, &out);
  return out;
}

TEST(JsonLine, EveryFixtureLineReadsAndWritesAsNlohmann) {
  size_t lines = 0, taken = 0;
  for (const char* dir : {POLYTUNE_FIXTURES, POLYTUNE_EXAMPLES}) {
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      if (entry.path().extension() != ".jsonl") continue;
      std::ifstream in(entry.path());
      std::string line;
      while (std::getline(in, line)) {
        if (line.empty() || !IsValidUtf8(line)) continue;
        ++lines;
        if (!Agrees(line)) continue;
        ++taken;
        Json j;
        ParseJsonLine(line, &j);
        EXPECT_EQ(Dumped(j), j.dump(-1, ' ', false, Json::error_handler_t::replace)) << entry.path() << ": " << line;
      }
    }
  }
  EXPECT_GT(lines, 1000u);
  EXPECT_EQ(taken, lines) << "every fixture line is ordinary JSON: none should need the fallback";
}

TEST(JsonLine, CornersOfTheGrammar) {
  // Taken: the same value as nlohmann, including unsigned for non-negative integers.
  for (const char* text :
       {"{}", "[]", " {\"a\" : [1, -2, 0, -0, true, false, null, \"\"]} ", "\"\\u00e9\\u20AC\\ud83d\\ude00\"",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "{\"deep\":[[[{\"x\":[]}]]]}", "999999999999999999", "-999999999999999999",
        "\"caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80\"", "\"\x7f\"", "\"\\u0000\""})
    EXPECT_TRUE(Agrees(text)) << text;
  // Numbers beyond the fast integers: nlohmann parses the token, and the result is its own.
  for (const char* text : {"1.5", "-1e5", "[2E-3, 0.0]", "1234567890123456789", "18446744073709551615",
                           "18446744073709551616", "-9223372036854775808", "-9223372036854775809"})
    EXPECT_TRUE(Agrees(text)) << text;
  // Declined but read by nlohmann: the fallback gives nlohmann's value.
  for (const char* text : {"{\"a\":1,\"a\":2}", "\xef\xbb\xbf{}"}) EXPECT_FALSE(Agrees(text)) << text;
  // Refused by both.
  for (const char* text :
       {"",           " ",     "{",       "{\"a\"}",   "{\"a\":}",    "[1,]",        "[1 2]",
        "{\"a\":1,}", "01",    "-",       "1.",        ".5",          "+1",          "tru",
        "nul",        "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\udc00\"", "\"\\ud800\"", "\"\\ud800\\u0041\"",
        "\"a\nb\"",   "{} x",  "[1]]",    "\"\t\"",    "1-2"})
    EXPECT_FALSE(Agrees(text)) << text;
  // Nesting beyond the reader's depth is nlohmann's.
  const std::string deep = std::string(300, '[') + std::string(300, ']');
  EXPECT_FALSE(Agrees(deep));
  EXPECT_TRUE(Agrees(std::string(200, '[') + std::string(200, ']')));
}

// Random values: strings over every escape-worthy byte and multi-byte characters, integers at
// the edges of the fast range, floats, nesting; written by nlohmann with random spacing.
Json RandomValue(std::mt19937_64& gen, int depth) {
  auto below = [&](uint64_t n) { return gen() % n; };
  static const std::vector<std::string> pieces = {"a",
                                                  "Z",
                                                  " ",
                                                  "\"",
                                                  "\\",
                                                  "/",
                                                  "\n",
                                                  "\t",
                                                  "\r",
                                                  "\b",
                                                  "\f",
                                                  std::string(1, '\0'),
                                                  "\x01",
                                                  "\x1f",
                                                  "\x7f",
                                                  "\xc3\xa9",
                                                  "\xe2\x82\xac",
                                                  "\xf0\x9f\x98\x80",
                                                  "\xe2\x80\xa8",
                                                  "0"};
  switch (depth > 3 ? below(5) : below(7)) {
    case 0: {
      std::string s;
      for (uint64_t k = 0, n = below(12); k < n; ++k) s += pieces[below(pieces.size())];
      return s;
    }
    case 1:
      return static_cast<int64_t>(gen()) >> below(64);
    case 2:
      return gen() >> below(64);
    case 3:
      return std::ldexp(static_cast<double>(static_cast<int64_t>(gen())), -static_cast<int>(below(80)));
    case 4:
      return below(3) == 0 ? Json(nullptr) : Json(below(2) == 0);
    case 5: {
      Json a = Json::array();
      for (uint64_t k = 0, n = below(5); k < n; ++k) a.push_back(RandomValue(gen, depth + 1));
      return a;
    }
    default: {
      Json o = Json::object();
      for (uint64_t k = 0, n = below(5); k < n; ++k)
        o[std::to_string(below(1000)) + "k\"\\"] = RandomValue(gen, depth + 1);
      return o;
    }
  }
}

TEST(JsonLine, GeneratedValuesRoundTripAsNlohmann) {
  std::mt19937_64 gen(7);
  size_t taken = 0;
  const int kValues = 3000;
  for (int i = 0; i < kValues; ++i) {
    const Json value = RandomValue(gen, 0);
    const std::string compact = value.dump();
    EXPECT_EQ(Dumped(value), value.dump(-1, ' ', false, Json::error_handler_t::replace)) << compact;
    taken += Agrees(compact);
    Agrees(value.dump(1 + static_cast<int>(gen() % 3)));  // indented: newlines between tokens
  }
  EXPECT_GT(taken, static_cast<size_t>(kValues / 2)) << "the fast reader should take most values";
}

TEST(JsonLine, InvalidUtf8InAStringIsWrittenAsNlohmannReplacesIt) {
  for (const std::string s : {std::string("ok \xff bad"), std::string("\xc3"), std::string("\xed\xa0\x80 x \"q\"")}) {
    const Json j = {{"text", s}, {"n", 1}};
    EXPECT_EQ(Dumped(j), j.dump(-1, ' ', false, Json::error_handler_t::replace));
  }
}

}  // namespace
}  // namespace polytune::dataprep
