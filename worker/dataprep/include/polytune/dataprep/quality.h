// Quality filters per language, Gopher-style (Rae et al. 2021, appendix A), adapted to
// fine-tuning examples: length in units (words, or characters for languages written without
// spaces), mean word length, symbol and digit ratios, and repetition (duplicate lines, the
// most frequent 2-4-gram, text covered by repeated 5-10-grams). Repetition rules need enough
// text to mean anything, so they apply from `repetition_min_units` on; the built-in defaults
// per language are the table in docs/data-prep.md.
#pragma once

#include <string>
#include <string_view>

#include "polytune/spec/prep_config.h"

namespace polytune::dataprep {

struct QualityRules {
  double min_units = 1;
  double max_units = 100000;
  double min_mean_word_length = 1;  // spaced scripts only, from 10 words on
  double max_mean_word_length = 15;
  // Symbols (Unicode S*, and # @ % & * \ | ~ ^ _ bullet section sign) / non-space characters.
  double max_symbol_ratio = 0.25;
  double max_digit_ratio = 0.6;  // decimal digits / non-space characters
  double max_duplicate_line_fraction = 0.3;
  double max_top_2gram_fraction = 0.20;
  double max_top_3gram_fraction = 0.18;
  double max_top_4gram_fraction = 0.16;
  double max_duplicate_5gram_fraction = 0.15;  // 6..9-grams: linear between 5 and 10
  double max_duplicate_10gram_fraction = 0.10;
  double repetition_min_units = 50;
};

// The built-in defaults for a language ("" or unknown: the space-delimited defaults), then the
// config's `defaults`, then its `languages[lang]`.
QualityRules DefaultQualityRules(const std::string& lang);
QualityRules ResolveQualityRules(const spec::QualityConfig& config, const std::string& lang);

// "" when the text passes, else the name of the first rule it fails (QualityRuleNames()).
std::string FailedQualityRule(std::string_view utf8_text, const QualityRules& rules, bool spaceless);

}  // namespace polytune::dataprep
