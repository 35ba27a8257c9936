// Starts and supervises the local rank processes of `polytune train --nproc N`.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace polytune::cli {

// A free TCP port on 127.0.0.1 (bound, read back and released).
int PickFreePort();

// Runs `executable` once per rank with `args` plus --rank/--world-size/--master-addr/
// --master-port/--local-rank. Returns when all ranks exit. If a rank fails, the others get
// SIGTERM (SIGKILL after `grace_seconds`) and the error names the failed rank.
absl::Status RunLocalRanks(const std::string& executable, const std::vector<std::string>& args, int nproc,
                           int grace_seconds = 10);

}  // namespace polytune::cli
