// `polytune data prepare`: multilingual data preparation from the command line.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>

namespace polytune::cli {

void RegisterDataPrepareCommand(CLI::App& data, const std::shared_ptr<std::function<int()>>& run);

}  // namespace polytune::cli
