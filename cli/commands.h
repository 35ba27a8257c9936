// `polytune` subcommands. Each returns a process exit code; errors are printed as one line.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>

namespace polytune::cli {

// Registers every subcommand on `app`; the returned function runs the one that was parsed.
std::function<int()> RegisterCommands(CLI::App& app);

}  // namespace polytune::cli
