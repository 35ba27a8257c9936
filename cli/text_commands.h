// `polytune tokenizer ...` and `polytune data ...`: the text pipeline from the command line.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>

namespace polytune::cli {

void RegisterTextCommands(CLI::App& app, const std::shared_ptr<std::function<int()>>& run);

}  // namespace polytune::cli
