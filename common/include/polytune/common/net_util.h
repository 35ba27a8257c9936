// Local TCP port probing, for rendezvous stores.
#pragma once

#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace polytune {

// "HOST:PORT" (or "[v6]:PORT") with PORT in 0-65535 (0: any free port). The error names
// `flag` and says what is wrong.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(const std::string& value, const std::string& flag);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read back, released).
// Returns 0 when none could be found.
int PickFreeLoopbackPort();

// Whether a listener could bind `port` on every interface now, as a rank 0 store will.
// When it cannot tell (no socket), it answers true and lets the bind itself fail later.
bool PortIsFree(int port);

}  // namespace polytune
