// The version and git commit this build was made from (set by CMake at configure time).
#pragma once

#include <string>

namespace polytune {

const char* BuildVersion();  // e.g. "0.1.0"
const char* BuildCommit();   // short git hash, or "unknown" outside a git checkout
// "0.1.0 (commit 1f8a4207c0de)"
std::string BuildDescription();

}  // namespace polytune
