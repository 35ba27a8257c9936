#include "polytune/dataprep/quality.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "char_props.h"
#include "polytune/common/check.h"
#include "text_hash.h"
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

// ASCII characters the symbol ratio counts: Unicode's math, currency and modifier symbols
// ($ + < = > ^ ` | ~) and the punctuation used as decoration or markup (# @ % & * \ _).
constexpr std::array<bool, 128> kAsciiSymbol = [] {
  std::array<bool, 128> t{};
  for (char c : std::string_view("$+<=>^`|~#@%&*\\_")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

// Words (spaced scripts) or characters (space-less), as byte ranges, plus the counts the
// ratio rules need.
struct Units {
  std::vector<std::string_view> units;
  size_t non_space = 0, symbols = 0, digits = 0;
  size_t unit_chars = 0;  // characters inside units
};

Units Split(std::string_view text, bool spaceless) {
  Units u;
  u.units.reserve(spaceless ? text.size() / 3 + 1 : text.size() / 5 + 1);
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
      u.symbols += kAsciiSymbol[static_cast<unsigned char>(ch)];
      if (word_start < 0) word_start = start;
      ++word_chars;
      continue;
    }
    UChar32 c = NextCodePoint(s, i, n);
    if (c < 0) c = 0xFFFD;
    const CharProps props = PropsOf(c);
    if (props.white_space) {
      end_word(start);
      continue;
    }
    ++u.non_space;
    const int8_t type = props.char_type;
    if (type == U_DECIMAL_DIGIT_NUMBER) ++u.digits;
    if (type == U_MATH_SYMBOL || type == U_CURRENCY_SYMBOL || type == U_MODIFIER_SYMBOL || type == U_OTHER_SYMBOL ||
        (c < 0x80 && kAsciiSymbol[c]) || c == 0x2022 || c == 0x00A7)
      ++u.symbols;
    if (spaceless) {
      // Each letter or digit is a unit; punctuation and symbols are not.
      if (props.alnum) {
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
  struct LineHash {
    size_t operator()(std::string_view line) const { return HashBytes(line, 0); }
  };
  absl::flat_hash_set<std::string_view, LineHash> seen;
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
  for (const auto& unit : u.units) h.push_back(HashBytes(unit, 0));
  return h;
}

// The hash of every n-gram, in order: sum of unit_hash[i + k] * P^(n-1-k) (mod 2^64), rolled
// from one position to the next in O(1) instead of O(n). The unit hashes are random 64-bit
// values, so two different n-grams share a hash with probability about 2^-64.
const std::vector<uint64_t>& NgramHashes(const std::vector<uint64_t>& unit_hashes, size_t n) {
  constexpr uint64_t kP = 0x100000001B3ULL;
  thread_local std::vector<uint64_t> out;
  out.clear();
  if (unit_hashes.size() < n) return out;
  uint64_t top = 1;  // P^(n-1)
  for (size_t k = 1; k < n; ++k) top *= kP;
  uint64_t h = 0;
  for (size_t k = 0; k < n; ++k) h = h * kP + unit_hashes[k];
  out.push_back(h);
  for (size_t i = 1; i + n <= unit_hashes.size(); ++i) {
    h = (h - unit_hashes[i - 1] * top) * kP + unit_hashes[i + n - 1];
    out.push_back(h);
  }
  return out;
}

// N-gram hash -> (count, first index), for one text at a time: open addressing over a
// thread-local slot array that a generation stamp empties in O(1). The n-gram rules look up
// every position of up to 9 n-gram lengths per example; absl's map, built and freed for each,
// was most of the quality stage's time.
class NgramTable {
 public:
  struct Entry {
    uint64_t hash;
    uint32_t count, first;
  };
  // Empties the table, sized for `items` keys.
  void Reset(size_t items) {
    size_t capacity = 16;
    while (capacity < 2 * items) capacity *= 2;
    if (slots_.size() < capacity) {
      slots_.assign(capacity, Slot{});
      generation_ = 0;
    }
    mask_ = capacity - 1;
    if (++generation_ == 0) {  // wrapped: stale stamps could read as current
      slots_.assign(slots_.size(), Slot{});
      generation_ = 1;
    }
  }
  // The entry for `hash`, inserted with count 0 and `index` as its first position if new.
  Entry& Find(uint64_t hash, uint32_t index) {
    for (size_t i = (hash ^ (hash >> 29)) & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.generation != generation_) {
        s = Slot{generation_, {hash, 0, index}};
        return s.entry;
      }
      if (s.entry.hash == hash) return s.entry;
    }
  }

 private:
  struct Slot {
    uint32_t generation = 0;
    Entry entry{};
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  uint32_t generation_ = 0;
};

NgramTable& ThreadTable() {
  thread_local NgramTable table;
  return table;
}

// Gopher: characters in the most frequent n-gram (times its count) over all unit characters.
double TopNgramFraction(const Units& u, const std::vector<uint64_t>& hashes, size_t n) {
  if (u.units.size() < n || u.unit_chars == 0) return 0.0;
  NgramTable& table = ThreadTable();
  table.Reset(u.units.size());
  // The most frequent, the earliest among equals: an entry is compared each time its count grows.
  uint32_t best_count = 0, best_index = 0;
  const std::vector<uint64_t>& ngrams = NgramHashes(hashes, n);
  for (size_t i = 0; i < ngrams.size(); ++i) {
    NgramTable::Entry& e = table.Find(ngrams[i], static_cast<uint32_t>(i));
    ++e.count;
    if (e.count > best_count || (e.count == best_count && e.first < best_index)) {
      best_count = e.count;
      best_index = e.first;
    }
  }
  if (best_count < 2) return 0.0;
  size_t chars = 0;
  for (size_t k = 0; k < n; ++k) chars += Chars(u.units[best_index + k]);
  return static_cast<double>(chars * best_count) / u.unit_chars;
}

// Gopher: characters of the units covered by n-grams that occur more than once, over all.
double DuplicateNgramFraction(const Units& u, const std::vector<uint64_t>& hashes, size_t n) {
  if (u.units.size() < n || u.unit_chars == 0) return 0.0;
  NgramTable& table = ThreadTable();
  table.Reset(u.units.size());
  std::vector<bool> covered(u.units.size(), false);
  bool any = false;
  const std::vector<uint64_t>& ngrams = NgramHashes(hashes, n);
  for (size_t i = 0; i < ngrams.size(); ++i) {
    const NgramTable::Entry& e = table.Find(ngrams[i], static_cast<uint32_t>(i));
    if (e.first == i) continue;
    any = true;
    for (size_t k = 0; k < n; ++k) covered[i + k] = covered[e.first + k] = true;
  }
  if (!any) return 0.0;
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
  // A repeated n-gram starts with a repeated (n-1)-gram, so once no n-gram repeats, no longer
  // one does and its fraction is 0: the rest are skipped (most text repeats no 5-gram).
  const double top2 = TopNgramFraction(u, hashes, 2);
  if (top2 > r.max_top_2gram_fraction) return "max_top_2gram_fraction";
  if (top2 > 0) {
    const double top3 = TopNgramFraction(u, hashes, 3);
    if (top3 > r.max_top_3gram_fraction) return "max_top_3gram_fraction";
    if (top3 > 0 && TopNgramFraction(u, hashes, 4) > r.max_top_4gram_fraction) return "max_top_4gram_fraction";
  }
  for (size_t n = 5; n <= 10; ++n) {
    const double limit = r.max_duplicate_5gram_fraction +
                         (r.max_duplicate_10gram_fraction - r.max_duplicate_5gram_fraction) * (n - 5) / 5.0;
    const double duplicated = DuplicateNgramFraction(u, hashes, n);
    if (duplicated > limit) return n == 10 ? "max_duplicate_10gram_fraction" : "max_duplicate_5gram_fraction";
    if (duplicated == 0) break;
  }
  return "";
}

}  // namespace polytune::dataprep
