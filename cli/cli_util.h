// Small helpers shared by the `polytune` subcommands.
#pragma once

#include <cstdio>
#include <string>

#include "absl/status/status.h"

namespace polytune::cli {

// Prints one "polytune: error: ..." line and returns the exit code for failures.
inline int Fail(const std::string& message) {
  std::fprintf(stderr, "polytune: error: %s\n", message.c_str());
  return 1;
}

inline int Fail(const absl::Status& status) { return Fail(std::string(status.message())); }

}  // namespace polytune::cli
