// The quality stage's repetition rules against a plain reference: n-grams as vectors of words
// in an ordered map, every length counted over every position. The production code hashes,
// rolls and narrows the positions it looks at from one n to the next; on random texts with a
// lot of repetition and random limits, both must name the same failed rule.
#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "polytune/dataprep/quality.h"

namespace polytune::dataprep {
namespace {

std::vector<std::string> Words(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == ' ' || c == '\n') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

double RefDuplicateLines(const std::string& text) {
  std::map<std::string, int> seen;
  size_t lines = 0, dup = 0, pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (!line.empty()) {
      ++lines;
      dup += seen[line]++ > 0;
    }
    pos = nl + 1;
  }
  return lines == 0 ? 0.0 : static_cast<double>(dup) / lines;
}

// Characters of the most frequent n-gram times its count (the earliest among equals), over all.
double RefTop(const std::vector<std::string>& w, size_t n, size_t total_chars) {
  if (w.size() < n || total_chars == 0) return 0;
  std::map<std::vector<std::string>, std::pair<int, size_t>> counts;  // count, first position
  for (size_t i = 0; i + n <= w.size(); ++i) {
    auto [it, fresh] = counts.try_emplace(std::vector<std::string>(w.begin() + i, w.begin() + i + n), 0, i);
    ++it->second.first;
  }
  int best = 0;
  size_t best_first = 0;
  for (const auto& [gram, cf] : counts)
    if (cf.first > best || (cf.first == best && cf.second < best_first)) best = cf.first, best_first = cf.second;
  if (best < 2) return 0;
  size_t chars = 0;
  for (size_t k = 0; k < n; ++k) chars += w[best_first + k].size();
  return static_cast<double>(chars * best) / total_chars;
}

// Characters of the words inside any n-gram that occurs more than once, over all.
double RefDuplicate(const std::vector<std::string>& w, size_t n, size_t total_chars) {
  if (w.size() < n || total_chars == 0) return 0;
  std::map<std::vector<std::string>, int> counts;
  for (size_t i = 0; i + n <= w.size(); ++i) ++counts[std::vector<std::string>(w.begin() + i, w.begin() + i + n)];
  std::vector<bool> covered(w.size(), false);
  for (size_t i = 0; i + n <= w.size(); ++i)
    if (counts[std::vector<std::string>(w.begin() + i, w.begin() + i + n)] > 1)
      for (size_t k = 0; k < n; ++k) covered[i + k] = true;
  size_t chars = 0;
  for (size_t i = 0; i < w.size(); ++i)
    if (covered[i]) chars += w[i].size();
  return static_cast<double>(chars) / total_chars;
}

// The rule order of FailedQualityRule, with every fraction computed the plain way.
std::string RefFailedRepetitionRule(const std::string& text, const QualityRules& r) {
  const std::vector<std::string> w = Words(text);
  if (w.size() < r.repetition_min_units) return "";
  if (RefDuplicateLines(text) > r.max_duplicate_line_fraction) return "max_duplicate_line_fraction";
  size_t total = 0;
  for (const auto& word : w) total += word.size();
  if (RefTop(w, 2, total) > r.max_top_2gram_fraction) return "max_top_2gram_fraction";
  if (RefTop(w, 3, total) > r.max_top_3gram_fraction) return "max_top_3gram_fraction";
  if (RefTop(w, 4, total) > r.max_top_4gram_fraction) return "max_top_4gram_fraction";
  for (size_t n = 5; n <= 10; ++n) {
    const double limit = r.max_duplicate_5gram_fraction +
                         (r.max_duplicate_10gram_fraction - r.max_duplicate_5gram_fraction) * (n - 5) / 5.0;
    if (RefDuplicate(w, n, total) > limit)
      return n == 10 ? "max_duplicate_10gram_fraction" : "max_duplicate_5gram_fraction";
  }
  return "";
}

TEST(QualityEquivalence, RepetitionRulesMatchThePlainReference) {
  std::mt19937_64 gen(20261127);
  auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(gen); };
  auto below = [&](size_t n) { return static_cast<size_t>(gen() % n); };
  std::map<std::string, int> outcomes;
  for (int trial = 0; trial < 3000; ++trial) {
    // A small vocabulary and copied spans: every rule gets texts just under and just over it.
    std::vector<std::string> vocab;
    const size_t v = 2 + below(40);
    for (size_t i = 0; i < v; ++i) {
      std::string word;
      for (size_t k = 0, len = 1 + below(9); k < len; ++k) word.push_back(static_cast<char>('a' + below(26)));
      vocab.push_back(word);
    }
    std::vector<std::string> words;
    const size_t length = below(400);
    while (words.size() < length) {
      if (words.size() > 12 && below(6) == 0) {
        const size_t span = 2 + below(11), from = below(words.size() - span + 1);
        for (size_t k = 0; k < span; ++k) words.push_back(words[from + k]);
      } else {
        words.push_back(vocab[below(v)]);
      }
    }
    std::string text;
    for (size_t i = 0; i < words.size(); ++i) {
      if (i > 0) text += below(15) == 0 ? "\n" : " ";
      text += words[i];
    }
    if (below(4) == 0) {  // a repeated line (boilerplate)
      const std::string line = text.substr(0, text.find('\n'));
      for (size_t k = 0, copies = 1 + below(4); k < copies; ++k) text += "\n" + line;
    }
    QualityRules r;
    r.min_units = 0;
    r.max_units = 1e9;
    r.min_mean_word_length = 0;
    r.max_mean_word_length = 1e9;
    r.max_symbol_ratio = 1;
    r.max_digit_ratio = 1;
    r.repetition_min_units = static_cast<double>(below(30));
    r.max_duplicate_line_fraction = uniform(0.0, 0.8);
    r.max_top_2gram_fraction = uniform(0.02, 0.6);
    r.max_top_3gram_fraction = uniform(0.02, 0.6);
    r.max_top_4gram_fraction = uniform(0.02, 0.6);
    r.max_duplicate_5gram_fraction = uniform(0.25, 1.0);
    r.max_duplicate_10gram_fraction = uniform(0.0, 0.6);
    const std::string expected = RefFailedRepetitionRule(text, r);
    ASSERT_EQ(FailedQualityRule(text, r, false), expected) << "trial " << trial << ": " << text;
    ++outcomes[expected];
  }
  // The generator must reach every rule, or the comparison proves less than it claims.
  for (const auto& [rule, count] : outcomes) std::printf("rule '%s': %d texts\n", rule.c_str(), count);
  for (const char* rule : {"", "max_duplicate_line_fraction", "max_top_2gram_fraction", "max_top_3gram_fraction",
                           "max_top_4gram_fraction", "max_duplicate_5gram_fraction", "max_duplicate_10gram_fraction"})
    EXPECT_GE(outcomes[rule], 20) << "rule '" << rule << "' was reached only " << outcomes[rule] << " times";
}

}  // namespace
}  // namespace polytune::dataprep
