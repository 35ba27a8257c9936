#include "polytune/dataprep/quality.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>
#include <vector>

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
  const char* text_end = nullptr;
};

// Fills `u` (a thread's reused buffers: no allocation per example once warm). The counters and
// the vector live in locals while scanning, so the compiler keeps them in registers instead of
// storing to the thread-local struct at every byte.
void Split(std::string_view text, bool spaceless, Units& u) {
  std::vector<std::string_view> units = std::move(u.units);
  units.clear();
  units.reserve(spaceless ? text.size() / 3 + 1 : text.size() / 5 + 1);
  size_t non_space = 0, symbols = 0, digits = 0, unit_chars = 0;
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const int32_t n = static_cast<int32_t>(text.size());
  int32_t word_start = -1;
  size_t word_chars = 0;
  auto end_word = [&](int32_t at) {
    if (word_start >= 0) {
      units.push_back(text.substr(word_start, at - word_start));
      unit_chars += word_chars;
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
      ++non_space;
      digits += ch >= '0' && ch <= '9';
      symbols += kAsciiSymbol[static_cast<unsigned char>(ch)];
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
    ++non_space;
    const int8_t type = props.char_type;
    if (type == U_DECIMAL_DIGIT_NUMBER) ++digits;
    if (type == U_MATH_SYMBOL || type == U_CURRENCY_SYMBOL || type == U_MODIFIER_SYMBOL || type == U_OTHER_SYMBOL ||
        (c < 0x80 && kAsciiSymbol[c]) || c == 0x2022 || c == 0x00A7)
      ++symbols;
    if (spaceless) {
      // Each letter or digit is a unit; punctuation and symbols are not.
      if (props.alnum) {
        units.push_back(text.substr(start, i - start));
        ++unit_chars;
      }
    } else {
      if (word_start < 0) word_start = start;
      ++word_chars;
    }
  }
  end_word(n);
  u.units = std::move(units);
  u.non_space = non_space;
  u.symbols = symbols;
  u.digits = digits;
  u.unit_chars = unit_chars;
  u.text_end = text.data() + text.size();
}

size_t Chars(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// N-gram hash -> (count, first index), for one text at a time: open addressing over a
// thread-local slot array that a generation stamp empties in O(1). absl's map, built and freed
// for each of up to 9 n-gram lengths per example, was most of the quality stage's time.
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
  // The entry for `hash`, inserted with count 0 and `index` as its first position if new. It
  // stays where it is until the next Reset.
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

// Lines (trailing spaces and tabs aside) that repeat an earlier line, over all non-empty
// lines. Lines are compared by 64-bit hash, as the n-grams are.
double DuplicateLineFraction(std::string_view text) {
  thread_local NgramTable seen;
  seen.Reset(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1);
  size_t lines = 0, dup = 0, pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    if (!line.empty()) {
      NgramTable::Entry& e = seen.Find(HashBytes(line, 0), static_cast<uint32_t>(lines));
      dup += e.count++ > 0;
      ++lines;
    }
    pos = nl + 1;
  }
  return lines == 0 ? 0.0 : static_cast<double>(dup) / lines;
}

// The Gopher repetition fractions for n = 2, 3, ... in turn. An n-gram that occurs twice starts
// with an (n-1)-gram that occurs twice, so each length looks only at the positions whose
// previous n-gram repeated: after the bigrams, ordinary prose leaves few. Hashes roll forward
// in place: hash_n(i) = hash_{n-1}(i) * P + unit_hash[i + n - 1] (mod 2^64), with random
// 64-bit unit hashes, so two different n-grams share a hash with probability about 2^-64.
class RepetitionScan {
 public:
  explicit RepetitionScan(const Units& u) : u_(u), b_(ThreadBuffers()) {
    const size_t count = u.units.size();
    b_.unit_hashes.resize(count);
    for (size_t i = 0; i < count; ++i) b_.unit_hashes[i] = UnitHash(u.units[i], u.text_end);
    b_.hashes = b_.unit_hashes;
    b_.positions.resize(count);
    for (size_t i = 0; i < count; ++i) b_.positions[i] = static_cast<uint32_t>(i);
  }

  // Gopher: characters in the most frequent n-gram (times its count, the earliest among
  // equals) over all unit characters. Call with n = 2, 3, ... in order.
  double TopFraction(size_t n) {
    if (!Advance(n)) return 0.0;
    uint32_t best_count = 0, best_index = 0;
    for (size_t k = 0; k < b_.positions.size(); ++k) {
      NgramTable::Entry& e = *b_.entries[k];
      if (e.count > best_count || (e.count == best_count && e.first < best_index)) {
        best_count = e.count;
        best_index = e.first;
      }
    }
    KeepRepeated();
    if (best_count < 2) return 0.0;
    size_t chars = 0;
    for (size_t k = 0; k < n; ++k) chars += Chars(u_.units[best_index + k]);
    return static_cast<double>(chars * best_count) / u_.unit_chars;
  }

  // Gopher: characters of the units covered by n-grams that occur more than once, over all.
  double DuplicateFraction(size_t n) {
    if (!Advance(n)) return 0.0;
    KeepRepeated();
    if (b_.positions.empty()) return 0.0;
    b_.covered.assign(u_.units.size(), false);
    for (uint32_t i : b_.positions)
      for (size_t k = 0; k < n; ++k) b_.covered[i + k] = true;
    size_t chars = 0;
    for (size_t i = 0; i < b_.covered.size(); ++i)
      if (b_.covered[i]) chars += Chars(u_.units[i]);
    return static_cast<double>(chars) / u_.unit_chars;
  }

 private:
  // Rolls the surviving positions' hashes from length n - 1 to n and counts them; false when
  // none is left (no n-gram can repeat).
  bool Advance(size_t n) {
    POLYTUNE_CHECK(n == n_ + 1) << "n-gram lengths must be visited in order";
    n_ = n;
    if (u_.unit_chars == 0) b_.positions.clear();
    size_t kept = 0;
    for (uint32_t i : b_.positions)
      if (i + n <= b_.unit_hashes.size()) {
        b_.hashes[i] = b_.hashes[i] * kP + b_.unit_hashes[i + n - 1];
        b_.positions[kept++] = i;
      }
    b_.positions.resize(kept);
    if (b_.positions.empty()) return false;
    NgramTable& table = b_.table;
    table.Reset(b_.positions.size());
    b_.entries.resize(b_.positions.size());
    for (size_t k = 0; k < b_.positions.size(); ++k) {
      NgramTable::Entry& e = table.Find(b_.hashes[b_.positions[k]], b_.positions[k]);
      ++e.count;
      b_.entries[k] = &e;
    }
    return true;
  }
  // Narrows the positions to those whose n-gram occurs more than once.
  void KeepRepeated() {
    size_t kept = 0;
    for (size_t k = 0; k < b_.positions.size(); ++k)
      if (b_.entries[k]->count >= 2) b_.positions[kept++] = b_.positions[k];
    b_.positions.resize(kept);
  }
  // A unit's hash. Up to 7 bytes, with the length in the top byte, go through one mix (a
  // bijection, so distinct short units never collide), read as one load where the text goes on
  // far enough; longer units through HashBytes.
  static uint64_t UnitHash(std::string_view unit, const char* text_end) {
    const size_t len = unit.size();
    if (len > 7) return HashBytes(unit, 0);
    uint64_t w = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (text_end - unit.data() >= 8) {
      std::memcpy(&w, unit.data(), 8);
      w &= (uint64_t{1} << (8 * len)) - 1;  // the unit's bytes are the low ones
      return Mix64(w | (static_cast<uint64_t>(len) << 56));
    }
#endif
    for (size_t k = 0; k < len; ++k) w |= static_cast<uint64_t>(static_cast<uint8_t>(unit[k])) << (8 * k);
    return Mix64(w | (static_cast<uint64_t>(len) << 56));
  }

  // Per thread, reused from one example to the next.
  struct Buffers {
    NgramTable table;
    std::vector<uint64_t> unit_hashes, hashes;
    std::vector<uint32_t> positions;          // ascending: the earliest occurrence is met first
    std::vector<NgramTable::Entry*> entries;  // each position's entry in the current table
    std::vector<bool> covered;
  };
  static Buffers& ThreadBuffers() {
    thread_local Buffers buffers;
    return buffers;
  }

  static constexpr uint64_t kP = 0x100000001B3ULL;
  const Units& u_;
  Buffers& b_;
  size_t n_ = 1;
};

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
  thread_local Units u;
  Split(text, spaceless, u);
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
  // Once no n-gram repeats, no longer one does: every later fraction is 0.
  RepetitionScan scan(u);
  if (scan.TopFraction(2) > r.max_top_2gram_fraction) return "max_top_2gram_fraction";
  if (scan.TopFraction(3) > r.max_top_3gram_fraction) return "max_top_3gram_fraction";
  if (scan.TopFraction(4) > r.max_top_4gram_fraction) return "max_top_4gram_fraction";
  for (size_t n = 5; n <= 10; ++n) {
    const double limit = r.max_duplicate_5gram_fraction +
                         (r.max_duplicate_10gram_fraction - r.max_duplicate_5gram_fraction) * (n - 5) / 5.0;
    const double duplicated = scan.DuplicateFraction(n);
    if (duplicated > limit) return n == 10 ? "max_duplicate_10gram_fraction" : "max_duplicate_5gram_fraction";
    if (duplicated == 0) break;
  }
  return "";
}

}  // namespace polytune::dataprep
