// output_dir/metrics.jsonl, written by rank 0 from typed records (one JSON object per line).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "polytune/common/metrics_record.h"

namespace polytune::engine {

class MetricsLog {
 public:
  explicit MetricsLog(std::string path) : path_(std::move(path)) {}
  // Starts an empty log (atomically replacing an old one).
  absl::Status Reset();
  // On resume: keeps the records up to `step` so the log reads like one run; a torn last line
  // (the process died mid-write) is dropped, any other unreadable line is an error naming it.
  absl::Status TruncateAfter(int64_t step);
  absl::Status Append(const MetricsRecord& record);

 private:
  std::string path_;
};

}  // namespace polytune::engine
