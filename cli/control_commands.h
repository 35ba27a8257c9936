// `polytune submit | jobs | status | watch | logs | cancel | workers | download`: the
// control-plane client. Coordinator from --coordinator, else $POLYTUNE_COORDINATOR, else
// 127.0.0.1:7070.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>

namespace polytune::cli {

void RegisterControlCommands(CLI::App& app, const std::shared_ptr<std::function<int()>>& run);

}  // namespace polytune::cli
