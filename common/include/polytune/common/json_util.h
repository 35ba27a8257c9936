// JSON parsing with errors that name the source.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace polytune {

// Parses `text`; on failure the error names `source` (a file, or "file:line").
absl::StatusOr<nlohmann::json> ParseJson(const std::string& text, const std::string& source);

// Reads and parses a whole JSON file.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

}  // namespace polytune
