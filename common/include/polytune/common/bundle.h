// A flat folder packed into one byte string (checkpoints travel as one verified artifact):
// "PTBUNDLE1\n", then per file: u32 name length, name, u64 size, bytes (little-endian).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace polytune {

// Packs the regular files directly in `dir` (sorted by name).
absl::StatusOr<std::string> PackDirectory(const std::string& dir);

// Unpacks into `out_dir` atomically (staging folder, fsync, rename). Rejects truncated
// bundles and names with '/' or "..".
absl::Status UnpackBundle(const std::string& bundle, const std::string& out_dir);

}  // namespace polytune
