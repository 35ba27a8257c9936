#include "polytune/dataprep/quality.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "polytune/common/check.h"
#include "utf8_cursor.h"

namespace polytune::dataprep {
namespace {

void Set(QualityRules& r, const std::string& name, double v) {
  if (name == "min_units")
    r.min_units = v;
  else if (name == "max_units")
    r.max_units = v;
  else if (name == "min_mean_word_length")
    r.min_mean_word_length = v;
  else if (name == "max_mean_word_length")
    r.max_mean_word_length = v;
  else if (name == "max_symbol_ratio")
    r.max_symbol_ratio = v;
  else if (name == "max_digit_ratio")
    r.max_digit_ratio = v;
  else if (name == "max_duplicate_line_fraction")
    r.max_duplicate_line_fraction = v;
  else if (name == "max_top_2gram_fraction")
    r.max_top_2gram_fraction = v;
  else if (name == "max_top_3gram_fraction")
    r.max_top_3gram_fraction = v;
  else if (name == "max_top_4gram_fraction")
    r.max_top_4gram_fraction = v;
  else if (name == "max_duplicate_5gram_fraction")
    r.max_duplicate_5gram_fraction = v;
  else if (name == "max_duplicate_10gram_fraction")
    r.max_duplicate_10gram_fraction = v;
  else if (name == "repetition_min_units")
    r.repetition_min_units = v;
  else
    POLYTUNE_CHECK(false) << "quality rule '" << name << "' passed the config parser but is not handled";
}

// Words (spaced scripts) or characters (space-less), as byte ranges, plus the counts the
// ratio rules need.
struct Units {
  std::vector<std::string_view> units;
  size_t non_space = 0, symbols = 0, digits = 0;
  size_t unit_chars = 0;  // characters inside units
};

Units Split(std::string_view text, bool spaceless) {
  Units u;
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const int32_t n = static_cast<int32_t>(text.size());
  int32_t word_start = -1;
  size_t word_chars = 0;
  auto end_word = [&](int32_t at) {
    if (word_start >= 0) {
      u.units.push_back(text.substr(word_start, at - word_start));
      u.unit_chars += word_chars;
    }
    word_start = -1;
    word_chars = 0;
  };
  for (int32_t i = 0; i < n;) {
    const int32_t start = i;
    if (s[i] < 0x80 && !spaceless) {  // ASCII, the common case: no property lookups
      const char ch = static_cast<char>(s[i++]);
      if (ch == ' ' || (ch >= '\t' && ch <= '\r')) {
        end_word(start);
        continue;
      }
      ++u.non_space;
      u.digits += ch >= '0' && ch <= '9';
      u.symbols += ch == '$' || ch == '+' || ch == '<' || ch == '=' || ch == '>' || ch == '`' ||
                   (ch != 0 && std::strchr("#@%&*\\|~^_", ch) != nullptr);
      if (word_start < 0) word_start = start;
      ++word_chars;
      continue;
    }
    UChar32 c = NextCodePoint(s, i, n);
    if (c < 0) c = 0xFFFD;
    if (u_isUWhiteSpace(c)) {
      end_word(start);
      continue;
    }
    ++u.non_space;
    const int8_t type = u_charType(c);
    if (type == U_DECIMAL_DIGIT_NUMBER) ++u.digits;
    if (type == U_MATH_SYMBOL || type == U_CURRENCY_SYMBOL || type == U_MODIFIER_SYMBOL || type == U_OTHER_SYMBOL ||
        (c > 0 && c < 0x80 && std::strchr("#@%&*\\|~^_", static_cast<char>(c)) != nullptr) || c == 0x2022 ||
        c == 0x00A7)
      ++u.symbols;
    if (spaceless) {
      // Each letter or digit is a unit; punctuation and symbols are not.
      if (u_isalnum(c)) {
        u.units.push_back(text.substr(start, i - start));
        ++u.unit_chars;
      }
    } else {
      if (word_start < 0) word_start = start;
      ++word_chars;
    }
  }
  end_word(n);
  return u;
}

size_t Chars(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

double DuplicateLineFraction(std::string_view text) {
  absl::flat_hash_set<std::string_view> seen;
  size_t lines = 0, dup = 0, pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    if (!line.empty()) {
      ++lines;
      dup += !seen.insert(line).second;
    }
    pos = nl + 1;
  }
  return lines == 0 ? 0.0 : static_cast<double>(dup) / lines;
}

// Hashes of each unit, once; n-gram hashes combine n of them.
std::vector<uint64_t> UnitHashes(const Units& u) {
  std::vector<uint64_t> h;
  h.reserve(u.units.size());
  for (const auto& unit : u.units) h.push_back(absl::HashOf(unit));
  return h;
}

uint64_t NgramHash(const std::vector<uint64_t>& unit_hashes, size_t i, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ULL;
  for (size_t k = 0; k < n; ++k) h = (h ^ unit_hashes[i + k]) * 0x100000001B3ULL + k;
  return h;
}

// Gopher: characters in the most frequent n-gram (times its count) over all unit characters.
double TopNgramFraction(const Units& u, const std::vector<uint64_t>& hashes, size_t n) {
  if (u.units.size() < n || u.unit_chars == 0) return 0.0;
  absl::flat_hash_map<uint64_t, std::pair<size_t, size_t>> counts;  // hash -> (count, first index)
  counts.reserve(u.units.size());
  for (size_t i = 0; i + n <= u.units.size(); ++i) {
    auto [it, inserted] = counts.try_emplace(NgramHash(hashes, i, n), 0, i);
    ++it->second.first;
  }
  size_t best_count = 0, best_index = 0;
  for (const auto& [h, v] : counts)
    if (v.first > best_count || (v.first == best_count && v.second < best_index)) {
      best_count = v.first;
      best_index = v.second;
    }
  if (best_count < 2) return 0.0;
  size_t chars = 0;
  for (size_t k = 0; k < n; ++k) chars += Chars(u.units[best_index + k]);
  return static_cast<double>(chars * best_count) / u.unit_chars;
}

// Gopher: characters of the units covered by n-grams that occur more than once, over all.
double DuplicateNgramFraction(const Units& u, const std::vector<uint64_t>& hashes, size_t n) {
  if (u.units.size() < n || u.unit_chars == 0) return 0.0;
  absl::flat_hash_map<uint64_t, size_t> first;
  first.reserve(u.units.size());
  std::vector<bool> covered(u.units.size(), false);
  for (size_t i = 0; i + n <= u.units.size(); ++i) {
    auto [it, inserted] = first.try_emplace(NgramHash(hashes, i, n), i);
    if (inserted) continue;
    for (size_t k = 0; k < n; ++k) covered[i + k] = covered[it->second + k] = true;
  }
  size_t chars = 0;
  for (size_t i = 0; i < covered.size(); ++i)
    if (covered[i]) chars += Chars(u.units[i]);
  return static_cast<double>(chars) / u.unit_chars;
}

}  // namespace

QualityRules DefaultQualityRules(const std::string& lang) {
  QualityRules r;
  if (lang == "zh" || lang == "ja" || lang == "th" || lang == "lo" || lang == "km" || lang == "my") {
    // Counted in characters: a word is 1-3 of them, so the bounds scale up, and repeated
    // multi-character terms are common enough that the repeated-n-gram limits loosen.
    r.min_units = 2;
    r.max_units = 250000;
    r.max_duplicate_5gram_fraction = 0.25;
    r.max_duplicate_10gram_fraction = 0.15;
    r.repetition_min_units = 100;
  } else if (lang == "de" || lang == "fi" || lang == "hu" || lang == "et" || lang == "nl" || lang == "sv" ||
             lang == "da" || lang == "no" || lang == "tr") {
    // Compounding and agglutinative languages have long words.
    r.max_mean_word_length = 20;
  }
  return r;
}

QualityRules ResolveQualityRules(const spec::QualityConfig& config, const std::string& lang) {
  QualityRules r = DefaultQualityRules(lang);
  for (const auto& [name, v] : config.defaults) Set(r, name, v);
  auto it = config.languages.find(lang);
  if (it != config.languages.end())
    for (const auto& [name, v] : it->second) Set(r, name, v);
  return r;
}

std::string FailedQualityRule(std::string_view text, const QualityRules& r, bool spaceless) {
  const Units u = Split(text, spaceless);
  const double units = static_cast<double>(u.units.size());
  if (units < r.min_units) return "min_units";
  if (units > r.max_units) return "max_units";
  if (!spaceless && units >= 10) {
    const double mean = static_cast<double>(u.unit_chars) / units;
    if (mean < r.min_mean_word_length) return "min_mean_word_length";
    if (mean > r.max_mean_word_length) return "max_mean_word_length";
  }
  if (u.non_space > 0) {
    if (static_cast<double>(u.symbols) / u.non_space > r.max_symbol_ratio) return "max_symbol_ratio";
    if (static_cast<double>(u.digits) / u.non_space > r.max_digit_ratio) return "max_digit_ratio";
  }
  if (units < r.repetition_min_units) return "";
  if (DuplicateLineFraction(text) > r.max_duplicate_line_fraction) return "max_duplicate_line_fraction";
  const std::vector<uint64_t> hashes = UnitHashes(u);
  if (TopNgramFraction(u, hashes, 2) > r.max_top_2gram_fraction) return "max_top_2gram_fraction";
  if (TopNgramFraction(u, hashes, 3) > r.max_top_3gram_fraction) return "max_top_3gram_fraction";
  if (TopNgramFraction(u, hashes, 4) > r.max_top_4gram_fraction) return "max_top_4gram_fraction";
  for (size_t n = 5; n <= 10; ++n) {
    const double limit = r.max_duplicate_5gram_fraction +
                         (r.max_duplicate_10gram_fraction - r.max_duplicate_5gram_fraction) * (n - 5) / 5.0;
    if (DuplicateNgramFraction(u, hashes, n) > limit)
      return n == 10 ? "max_duplicate_10gram_fraction" : "max_duplicate_5gram_fraction";
  }
  return "";
}

}  // namespace polytune::dataprep
