#include "polytune/engine/metrics_log.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "polytune/common/file_util.h"

namespace polytune::engine {

absl::Status MetricsLog::Reset() { return WriteFileAtomic(path_, ""); }

absl::Status MetricsLog::TruncateAfter(int64_t step) {
  auto text = ReadFileToString(path_);
  if (!text.ok()) return absl::OkStatus();  // no log yet
  std::string kept;
  size_t start = 0;
  for (int line_no = 1; start < text->size(); ++line_no) {
    const size_t end = text->find('\n', start);
    if (end == std::string::npos) break;  // a torn last line is dropped
    const std::string line = text->substr(start, end - start);
    start = end + 1;
    auto record = MetricsRecordFromJson(line);
    if (!record.ok()) return absl::DataLossError(absl::StrCat(path_, ":", line_no, ": ", record.status().message()));
    if (record->step() <= step) kept += line + "\n";
  }
  return WriteFileAtomic(path_, kept);
}

absl::Status MetricsLog::Append(const MetricsRecord& record) {
  std::ofstream out(path_, std::ios::app);
  out << MetricsRecordToJson(record) << "\n";
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("cannot append to ", path_));
  return absl::OkStatus();
}

}  // namespace polytune::engine
