// Loading what `polytune report` shows from a training output folder.
#include <algorithm>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "polytune/common/file_util.h"
#include "report.h"

namespace polytune::cli {
namespace fs = std::filesystem;

absl::StatusOr<std::vector<ReportSample>> ParseGenerationSamples(const std::string& text, const std::string& source) {
  std::vector<ReportSample> last;
  int64_t last_step = -1;
  int line_no = 0;
  const std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipWhitespace());
  for (const auto& line : lines) {
    ++line_no;
    try {
      const auto j = nlohmann::json::parse(line);
      const int64_t step = j.at("step").get<int64_t>();
      if (step < last_step) continue;  // a resumed run repeats steps; keep the newest evaluation
      std::vector<ReportSample> samples;
      for (const auto& s : j.at("samples")) {
        ReportSample r;
        r.step = step;
        r.lang = s.at("lang").get<std::string>();
        r.prompt = s.at("prompt").get<std::string>();
        r.output = s.at("output").get<std::string>();
        r.reference = s.value("reference", "");
        r.label = s.value("label", "");
        r.chrf = s.value("chrf", 0.0);
        samples.push_back(std::move(r));
      }
      last = std::move(samples);
      last_step = step;
    } catch (const nlohmann::json::exception& e) {
      if (line_no == static_cast<int>(lines.size())) break;  // torn last line of a killed run
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":", line_no, ": not a generations record (", e.what(), ")"));
    }
  }
  return last;
}

absl::StatusOr<ReportData> LoadOutputDirReport(const std::string& dir) {
  ReportData d;
  d.title = fs::absolute(dir).lexically_normal().string();
  const std::string metrics_path = dir + "/metrics.jsonl";
  auto text = ReadFileToString(metrics_path);
  if (!text.ok())
    return absl::NotFoundError(absl::StrCat(metrics_path, " cannot be read (", text.status().message(),
                                            "); give the output_dir of a `polytune train` run, or a job id"));
  const std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipWhitespace());
  for (size_t i = 0; i < lines.size(); ++i) {
    auto r = MetricsRecordFromJson(lines[i]);
    if (!r.ok()) {
      if (i + 1 == lines.size()) break;  // torn last line
      return absl::InvalidArgumentError(absl::StrCat(metrics_path, ":", i + 1, ": ", r.status().message()));
    }
    d.metrics.push_back(std::move(*r));
  }
  if (auto gens = ReadFileToString(dir + "/generations.jsonl"); gens.ok()) {
    auto samples = ParseGenerationSamples(*gens, dir + "/generations.jsonl");
    if (!samples.ok()) return samples.status();
    d.samples = std::move(*samples);
  }
  if (auto spec = ReadFileToString(dir + "/job.yaml"); spec.ok()) d.spec_yaml = *spec;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir + "/checkpoints", ec)) {
    const std::string name = entry.path().filename().string();
    int64_t step;
    if (name.rfind("step-", 0) == 0 && absl::SimpleAtoi(name.substr(5), &step) &&
        fs::exists(entry.path() / "trainer_state.json"))
      d.checkpoint_steps.push_back(step);
  }
  std::sort(d.checkpoint_steps.begin(), d.checkpoint_steps.end());
  if (auto best = ReadFileToString(dir + "/checkpoints/best.json"); best.ok()) {
    try {
      d.best_step = nlohmann::json::parse(*best).at("step").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/checkpoints/best.json: ", e.what()));
    }
  }
  return d;
}

}  // namespace polytune::cli
