// Text standardisation, the first stage of data preparation: valid UTF-8, one Unicode
// normalisation form, no stray control characters, tidy whitespace. Code (``` fenced blocks
// and `inline` spans) passes through byte for byte: whitespace and compatibility forms carry
// meaning there.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "polytune/spec/prep_config.h"

namespace polytune::dataprep {

// Writes `in` to `out` with every byte that is not part of a well-formed UTF-8 sequence
// (overlongs, surrogates and values above U+10FFFF included) replaced by U+FFFD. Returns how
// many bytes were replaced (0: `in` was valid and `out` equals it).
size_t RepairUtf8(std::string_view in, std::string* out);
bool IsValidUtf8(std::string_view in);

// Applies the config to valid UTF-8 text (run RepairUtf8 first).
std::string Standardize(std::string_view text, const spec::StandardizeConfig& config);

}  // namespace polytune::dataprep
