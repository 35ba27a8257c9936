// CHECK for broken invariants only (a programming error, never bad input or a failed I/O):
// prints file:line, the condition and any streamed context to stderr, then aborts so a core
// dump or the supervisor's restart takes over. Debian 12's Abseil predates absl/log.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace polytune::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": CHECK failed: " << condition << " ";
  }
  [[noreturn]] ~CheckFailure() {
    const std::string s = stream_.str();
    std::fprintf(stderr, "%s\n", s.c_str());
    std::fflush(stderr);
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `CHECK(c) << x` be one expression of type void.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace polytune::internal

#define POLYTUNE_CHECK(condition) \
  (condition)                     \
      ? (void)0                   \
      : ::polytune::internal::Voidify() & ::polytune::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()
