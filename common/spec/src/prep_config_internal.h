// The data preparation config as a YAML sub-tree, so a job spec can carry it as data.prepare
// with the same rules and the same canonical form. Internal to polytune::spec.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "absl/status/status.h"
#include "polytune/spec/prep_config.h"
#include "yaml_parser.h"

namespace polytune::spec::internal {

// `path` is the dotted key of `root` ("" at the top of a prep config, "data.prepare" in a job).
absl::Status ParsePrepConfigNode(const Parser& p, const YAML::Node& root, const std::string& path, PrepConfig* c);
void EmitPrepConfig(YAML::Emitter& e, const PrepConfig& c);

}  // namespace polytune::spec::internal
