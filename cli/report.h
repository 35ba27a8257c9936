// `polytune report`: one self-contained HTML file about a training run (no scripts, no
// network, inline SVG charts, printable): loss and learning-rate curves, tokens/s, evaluation
// per language over time, the final per-language table, sample generations beside their
// references, the job's spec and events.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/common/metrics_record.h"

namespace polytune::cli {

struct ReportSample {
  int64_t step = 0;
  std::string lang, prompt, output, reference, label;
  double chrf = 0;
};

struct ReportEvent {
  int64_t time_unix_micros = 0;  // 0: unknown
  std::string state, reason;
};

// Everything the report shows, from an output folder or from the coordinator.
struct ReportData {
  std::string title;  // the job id and name, or the output folder
  std::string state;  // "" for a local run
  std::string reason;
  std::string spec_yaml;  // "" when unknown
  std::vector<ReportEvent> events;
  std::vector<MetricsRecord> metrics;
  std::vector<ReportSample> samples;  // of the last evaluation that generated
  std::vector<int64_t> checkpoint_steps;
  std::optional<int64_t> best_step;
};

// output_dir of `polytune train`: metrics.jsonl, generations.jsonl, checkpoints/ (best.json),
// job.yaml. A missing metrics.jsonl is an error naming it; a torn last line is ignored.
absl::StatusOr<ReportData> LoadOutputDirReport(const std::string& dir);

// The samples of the last evaluation in a generations.jsonl text; `source` names it in errors.
absl::StatusOr<std::vector<ReportSample>> ParseGenerationSamples(const std::string& text, const std::string& source);

std::string RenderReportHtml(const ReportData& data);

}  // namespace polytune::cli
