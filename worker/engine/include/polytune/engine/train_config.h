// The training configuration is the job spec (polytune/spec/job_spec.h): one type, parsed by
// one function, whether it comes from `polytune train`, a worker or a coordinator.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "polytune/spec/job_spec.h"

namespace polytune::engine {

using LrSchedule = spec::LrSchedule;
using TrainConfig = spec::JobSpec;
using spec::LrScheduleName;

// A spec read for training here (SpecUse::kTraining): output_dir required, local datasets.
absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path);
// Parses YAML text; `source` names it in errors and `base_dir` resolves relative paths.
absl::StatusOr<TrainConfig> ParseTrainConfig(const std::string& yaml_text, const std::string& source,
                                             const std::string& base_dir);

}  // namespace polytune::engine
