// Helpers of the control-plane end-to-end tests: real processes on loopback.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../engine/test_util.h"

namespace polytune::testing {

// Starts `argv` in its own process group with stderr to `log` (stdout is inherited).
inline pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    FILE* f = std::freopen(log.c_str(), "a", stderr);
    (void)f;
    std::vector<char*> c;
    for (const auto& s : argv) c.push_back(::strdup(s.c_str()));
    c.push_back(nullptr);
    ::execv(c[0], c.data());
    ::_exit(127);
  }
  return pid;
}

// A loopback port that was free a moment ago.
inline int FreePort() {
  ShellResult r =
      Shell("python3 -c 'import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));print(s.getsockname()[1])'");
  return std::stoi(r.output);
}

}  // namespace polytune::testing
