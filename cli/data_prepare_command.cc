#include "data_prepare_command.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "cli_util.h"
#include "polytune/dataprep/pipeline.h"
#include "polytune/spec/prep_config.h"

namespace polytune::cli {
namespace {

struct PrepareArgs {
  std::vector<std::string> inputs;
  std::string out, config;
  int threads = 0;
  bool json = false;
};

int Prepare(const PrepareArgs& a) {
  spec::PrepConfig config;
  if (!a.config.empty()) {
    auto loaded = spec::LoadPrepConfig(a.config);
    if (!loaded.ok()) return Fail(loaded.status());
    config = *loaded;
  }
  dataprep::PrepOptions options;
  options.inputs = a.inputs;
  options.out_dir = a.out;
  options.threads = a.threads > 0 ? a.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const bool bar = ::isatty(STDERR_FILENO) == 1;
  const auto start = std::chrono::steady_clock::now();
  if (bar) {
    options.progress = [start](int64_t done, int64_t total) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double frac = total > 0 ? static_cast<double>(done) / total : 1.0;
      const int width = 30, filled = static_cast<int>(frac * width);
      std::fprintf(stderr, "\r[%s%s] %3.0f%% %.1f/%.1f MB %.1f MB/s", std::string(filled, '#').c_str(),
                   std::string(width - filled, ' ').c_str(), 100 * frac, done / 1e6, total / 1e6,
                   s > 0 ? done / 1e6 / s : 0.0);
      std::fflush(stderr);
    };
  }
  auto report = dataprep::PrepareData(config, options);
  if (bar) std::fprintf(stderr, "\n");
  if (!report.ok()) return Fail(report.status());
  if (a.json) {
    std::printf("%s\n", report->ToJson().dump().c_str());
  } else {
    std::printf("%s", dataprep::FormatReportTable(*report).c_str());
    std::printf("wrote %s/data.jsonl, dropped.jsonl, report.json\n", a.out.c_str());
  }
  return 0;
}

}  // namespace

void RegisterDataPrepareCommand(CLI::App& data, const std::shared_ptr<std::function<int()>>& run) {
  auto args = std::make_shared<PrepareArgs>();
  auto* prepare = data.add_subcommand(
      "prepare", "Standardise, identify languages, filter, deduplicate and scrub PII (docs/data-prep.md)");
  prepare->add_option("inputs", args->inputs, "JSONL files (messages, alpaca or text format)")->required();
  prepare->add_option("--out", args->out, "Output folder: data.jsonl, dropped.jsonl, report.json")->required();
  prepare->add_option("--config", args->config, "prep.yaml; every stage on with its defaults when omitted");
  prepare->add_option("--threads", args->threads, "Worker threads (0: all cores)")->capture_default_str();
  prepare->add_flag("--json", args->json, "Print the report as one JSON object instead of the table");
  prepare->callback([run, args] { *run = [args] { return Prepare(*args); }; });
}

}  // namespace polytune::cli
