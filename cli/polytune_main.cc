// `polytune`: thin entry point; the commands live in commands.cc.
#include <CLI/CLI.hpp>

#include "commands.h"
#include "polytune/engine/cpu_threads.h"

int main(int argc, char** argv) {
  polytune::engine::ReexecWithPassiveOpenMpWait(argc, argv);
  CLI::App app{"polytune: multilingual QLoRA fine-tuning"};
  auto run = polytune::cli::RegisterCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return run();
}
