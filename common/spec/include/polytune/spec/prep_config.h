// The data preparation config: what `polytune data prepare --config prep.yaml` reads and what a
// job spec carries as `data.prepare` (documented key by key in docs/data-prep.md). Parsed and
// validated once, with the job spec's rules: an unknown key or a value of the wrong type or
// range is an error naming the source, the line and the dotted key.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace polytune::spec {

enum class InvalidUtf8 { kRepair, kDrop };  // repair: each bad byte becomes U+FFFD
enum class UnicodeForm { kNone, kNfc, kNfkc };
enum class DeclaredLanguage { kKeep, kRelabel, kDrop };  // when a declared `lang` disagrees

struct StandardizeConfig {
  bool enabled = true;
  InvalidUtf8 invalid_utf8 = InvalidUtf8::kRepair;
  UnicodeForm unicode = UnicodeForm::kNfc;
  bool remove_control_chars = true;  // C0/C1 controls other than tab and newline, and U+FEFF
  bool whitespace = true;            // exotic spaces -> ' ', trailing spaces cut, >2 blank lines cut
  bool ascii_digits = false;         // every Unicode decimal digit -> 0-9
};

struct LanguageConfig {
  bool enabled = true;
  std::vector<std::string> languages;  // allowed ISO 639-1 codes; empty: any language
  double min_confidence = 0.5;         // in [0, 1]; below it the example is dropped (`language`)
  DeclaredLanguage declared = DeclaredLanguage::kRelabel;
  // Longer text is identified from this many bytes of it, taken as evenly spaced windows so
  // every part of the example still counts; 0: all of it.
  int64_t sample_bytes = 512;
};

// Thresholds by rule name (QualityRuleNames()); built-in defaults per language, then
// `defaults`, then `languages[lang]` override them.
struct QualityConfig {
  bool enabled = true;
  std::map<std::string, double> defaults;
  std::map<std::string, std::map<std::string, double>> languages;
};
const std::vector<std::string>& QualityRuleNames();

struct DedupConfig {
  bool exact = true;
  bool near = true;
  double threshold = 0.8;          // Jaccard similarity of shingle sets, in (0, 1]
  int64_t num_permutations = 128;  // bands x rows is chosen from the threshold within this
  int64_t word_ngram = 5;          // shingle size for space-delimited scripts
  int64_t char_ngram = 5;          // for CJK and Thai
  uint64_t seed = 1;
};

struct PiiPattern {
  std::string name;
  std::string regex;  // RE2 syntax; checked when parsed
  std::string placeholder;
};

struct PiiConfig {
  bool enabled = true;
  std::vector<std::string> types = {"email", "phone", "iban", "card", "ip", "id"};
  std::vector<std::string> regions;                 // extra phone regions (ISO 3166 alpha-2)
  std::map<std::string, std::string> placeholders;  // type -> text; missing: <EMAIL> and so on
  std::vector<PiiPattern> patterns;
};
const std::vector<std::string>& PiiTypeNames();  // email, phone, iban, card, ip, id

struct PrepConfig {
  StandardizeConfig standardize;
  LanguageConfig language;
  QualityConfig quality;
  DedupConfig dedup;
  PiiConfig pii;
  bool strict = false;  // a malformed input line stops the run instead of being reported and counted
};

// Parses YAML text; `source` names it in errors ("prep.yaml").
absl::StatusOr<PrepConfig> ParsePrepConfig(const std::string& yaml_text, const std::string& source);
absl::StatusOr<PrepConfig> LoadPrepConfig(const std::string& path);
// Every field, defaults included, in a fixed order: ParsePrepConfig(ToCanonicalYaml(c)) == c.
// Its sha256 is the config part of the prepared-data cache key.
std::string ToCanonicalYaml(const PrepConfig& config);
bool operator==(const PrepConfig& a, const PrepConfig& b);

}  // namespace polytune::spec
