// `polytune`: the one command users type. The control-plane commands (submit, jobs, status,
// watch, logs, cancel, workers, download) run here, in a binary without libtorch, so they
// start in milliseconds; the engine commands (train, eval, generate, export, model, tokenizer, data) are
// handed to `polytune-engine`, installed next to it, with the same arguments.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli_util.h"
#include "control_commands.h"
#include "polytune/common/build_info.h"

namespace {
namespace fs = std::filesystem;

// The engine binary next to this one (build tree: the same folder).
std::string EnginePath() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return (self.parent_path() / "polytune-engine").string();
}

int ExecEngine(int argc, char** argv) {
  const std::string engine = EnginePath();
  std::vector<char*> args(argv, argv + argc);
  // argv[0] stays what the user typed, so usage lines say "polytune"; the engine finds itself
  // through /proc/self/exe.
  args.push_back(nullptr);
  ::execv(engine.c_str(), args.data());
  return polytune::cli::Fail(std::string("cannot run ") + engine + ": " + std::strerror(errno) +
                             "; polytune-engine must be installed next to polytune");
}

// The subcommand named on the command line (the first word that is not a global option).
std::string Subcommand(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--coordinator" || arg == "--token-file" || arg == "--tls-ca" || arg == "--tls-cert" ||
        arg == "--tls-key") {
      ++i;  // its value
      continue;
    }
    if (!arg.empty() && arg[0] == '-') continue;
    return arg;
  }
  return "";
}

const std::vector<std::pair<const char*, const char*>>& EngineCommands() {
  static const auto* commands = new std::vector<std::pair<const char*, const char*>>{
      {"train", "Fine-tune with QLoRA from a YAML config"},
      {"eval", "Loss, perplexity and accuracy per language"},
      {"generate", "Generate text with a model (and adapter) from a prompt or a dataset"},
      {"export", "Merge an adapter into a full-precision HF checkpoint"},
      {"model", "Create or inspect model checkpoints"},
      {"tokenizer", "Hugging Face tokenizer.json tools"},
      {"data", "Prepare, inspect and render training data"}};
  return *commands;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string sub = Subcommand(argc, argv);
  for (const auto& [name, help] : EngineCommands())
    if (sub == name) return ExecEngine(argc, argv);  // parsed and helped there
  CLI::App app{"polytune: multilingual QLoRA fine-tuning"};
  app.set_version_flag("--version", std::string("polytune ") + polytune::BuildDescription());
  app.require_subcommand(1);
  auto run = std::make_shared<std::function<int()>>([] { return 0; });
  polytune::cli::RegisterControlCommands(app, run);
  // Listed in --help; never parsed here (they were handed over above).
  for (const auto& [name, help] : EngineCommands()) app.add_subcommand(name, help)->allow_extras();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return (*run)();
}
