#include "polytune/engine/train_config.h"

namespace polytune::engine {

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path) {
  return spec::LoadJobSpec(path, spec::SpecUse::kTraining);
}

absl::StatusOr<TrainConfig> ParseTrainConfig(const std::string& yaml_text, const std::string& source,
                                             const std::string& base_dir) {
  return spec::ParseJobSpec(yaml_text, source, base_dir, spec::SpecUse::kTraining);
}

}  // namespace polytune::engine
