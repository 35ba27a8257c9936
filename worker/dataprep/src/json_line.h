// Reading and writing one JSONL line of the data-preparation pipeline, several times faster
// than nlohmann's parser and serializer, with exactly their results.
//
// The contract is equality, not a second JSON dialect: ParseJsonLine either builds the value
// nlohmann::ordered_json::parse would build from the same text, or declines (returns false),
// and the caller then asks nlohmann (for the value or for its error message). It declines
// whatever it does not handle itself: malformed text, duplicate keys, a byte-order mark,
// fractions and exponents, integers of more than 18 digits (those numbers are parsed by
// nlohmann, token by token), nesting deeper than 256. AppendJson writes the bytes
// `value.dump(-1, ' ', false, error_handler_t::replace)` writes. Both are checked against
// nlohmann on the fixtures, on generated values and by a differential fuzz target.
#pragma once

#include <string>
#include <string_view>

#include "nlohmann/json.hpp"

namespace polytune::dataprep {

// `text` must be valid UTF-8 (the pipeline checks or repairs every line first). On false,
// *out is left as it was.
bool ParseJsonLine(std::string_view text, nlohmann::ordered_json* out);

void AppendJson(const nlohmann::ordered_json& value, std::string* out);

}  // namespace polytune::dataprep
