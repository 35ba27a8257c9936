// File helpers with crash-safe write semantics.
//
// Contract: anything written through WriteFileAtomic / CommitDirectory is either fully
// present under its final name or absent; a crash midway leaves at most a temporary
// (".tmp-" prefixed) entry that readers ignore.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace polytune {

absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` via a temporary file in the same directory, fsyncs the file,
// renames it over `path` and fsyncs the directory.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view contents);

// fsync() on a file or directory.
absl::Status FsyncPath(const std::string& path);

// Makes a fresh temporary directory next to `final_dir` (same filesystem, name starting
// with ".tmp-"), for building a directory that CommitDirectory() then publishes.
absl::StatusOr<std::string> MakeStagingDirectory(const std::string& final_dir);

// fsyncs every regular file in `staging_dir` and the directory itself, then renames it to
// `final_dir` (replacing an existing one) and fsyncs the parent.
absl::Status CommitDirectory(const std::string& staging_dir, const std::string& final_dir);

}  // namespace polytune
