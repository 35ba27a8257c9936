// Language identification: CLD2 as the base, made better where it is weak (short text,
// close languages). Codes are ISO 639-1 where one exists ("he", not CLD2's "iw").
//
// Order of decisions for one example (all of its text fields joined; from a longer one, evenly
// spaced windows of `sample_bytes` in all):
//  1. Script shortcut: when one script that only one supported language writes (Hangul, kana,
//     Thai, Greek, Hebrew, Georgian, Armenian, ...) holds most of the letters, that language.
//  2. CLD2 (best effort, so short text gets an answer instead of "unknown"): its top three.
//  3. With an allow-list, the first allowed candidate of those three; else an allowed language
//     in the same close set as the top one (Malay -> Indonesian, Bosnian/Croatian/Serbian,
//     Danish/Norwegian, ...); else CLD2 rerun with each allowed language as its hint, keeping
//     the one it then confirms with the highest score.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "polytune/spec/prep_config.h"

namespace polytune::dataprep {

struct LanguageGuess {
  std::string code;         // "" when undetermined
  double confidence = 0.0;  // [0, 1]: 1 for a script shortcut, CLD2's share of the text otherwise
  bool reliable = false;    // CLD2's own reliability flag (true for a script shortcut)
  std::string method;       // "script", "cld2", "allow_list", "close_set", "hint"
};

class LanguageIdentifier {
 public:
  explicit LanguageIdentifier(spec::LanguageConfig config);
  LanguageGuess Identify(std::string_view utf8_text) const;
  // CLD2 alone (default flags, no shortcut, no allow-list): the baseline tests compare with.
  static LanguageGuess Cld2Only(std::string_view utf8_text);
  bool Allowed(const std::string& code) const;

 private:
  spec::LanguageConfig config_;
};

// CLD2's code for a language as ISO 639-1 ("iw" -> "he", "zh-Hant" -> "zh", "un" -> "").
std::string NormalizeLanguageCode(std::string_view cld2_code);
// Languages written without spaces between words: length is counted in characters.
bool IsSpacelessLanguage(std::string_view code);
// What identification reads of a longer text: `sample_bytes` (0: all) taken as 4 evenly
// spaced windows, each starting on a word and a UTF-8 boundary, joined by newlines. On 3000
// documents of 0.3-6 KB built from the LID fixture, 1024 bytes changed no answer with the
// allow-list and 2 (of 3000) without one, and made identification 3.3-3.5 times faster.
std::string SampleForIdentification(std::string_view utf8_text, size_t sample_bytes);
// The script shortcut alone ("" when no single-language script dominates).
std::string LanguageFromScript(std::string_view utf8_text);

}  // namespace polytune::dataprep
