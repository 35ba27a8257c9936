// `polytune` subcommands. Each returns a process exit code; errors are printed as one line.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>

namespace polytune::cli {

// Registers every subcommand on `app`; the returned function runs the one that was parsed.
std::function<int()> RegisterCommands(CLI::App& app);

// The whole `polytune` program (main() of the binary and of test binaries built around it).
int Main(int argc, char** argv);

// Test seam: called in a rank process before each optimizer step with (rank, step). Only test
// binaries set it (tests/support/fault_injecting_polytune.cc); `polytune` never does.
void SetTrainingStepHook(std::function<void(int rank, int64_t step)> hook);

}  // namespace polytune::cli
