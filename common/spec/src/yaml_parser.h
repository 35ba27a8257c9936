// The YAML reader the spec parsers share (job spec, data preparation config): typed values out
// of yaml-cpp nodes, every error naming source:line and the dotted key. Internal to polytune::spec.
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "polytune/common/sha256.h"
#include "polytune/common/status_macros.h"
#include "polytune/spec/job_spec.h"

namespace polytune::spec::internal {

namespace fs = std::filesystem;

inline bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Reads typed values out of YAML nodes; every error names source:line and the dotted key.
class Parser {
 public:
  Parser(std::string source, std::string base_dir, SpecUse use)
      : source_(std::move(source)), base_dir_(std::move(base_dir)), use_(use) {}

  absl::Status Error(const YAML::Node& node, const std::string& key, const std::string& why) const {
    std::string where = source_;
    if (node.IsDefined() && node.Mark().line >= 0) where = absl::StrCat(source_, ":", node.Mark().line + 1);
    return absl::InvalidArgumentError(absl::StrCat(where, ": '", key, "' ", why));
  }

  static std::string Join(const std::string& path, const std::string& key) {
    return path.empty() ? key : absl::StrCat(path, ".", key);
  }

  // Checks that `node` is a map whose keys are all in `allowed`.
  absl::Status Keys(const YAML::Node& node, const std::string& path, const std::vector<std::string>& allowed) const {
    if (!node.IsMap()) return Error(node, path.empty() ? "(top level)" : path, "must be a mapping");
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar())  // found by fuzzing: `{ {a: b}: c }` made as<string>() throw
        return Error(it->first, path.empty() ? "(top level)" : path, "has a key that is not a plain name");
      const std::string key = it->first.Scalar();
      if (!Contains(allowed, key))
        return Error(it->first, Join(path, key),
                     absl::StrCat("is not a known key; expected one of: ", absl::StrJoin(allowed, ", ")));
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Get(const YAML::Node& parent, const std::string& path, const std::string& key, T* out,
                   const char* type_name) const {
    YAML::Node n = parent[key];
    if (!n.IsDefined() || n.IsNull()) return absl::OkStatus();
    const std::string full = Join(path, key);
    if (!n.IsScalar()) return Error(n, full, absl::StrCat("must be ", type_name));
    try {
      *out = n.as<T>();
    } catch (const YAML::Exception&) {
      return Error(n, full, absl::StrCat("must be ", type_name, ", got '", n.Scalar(), "'"));
    }
    return absl::OkStatus();
  }

  absl::Status Number(const YAML::Node& parent, const std::string& path, const std::string& key, double* out) const {
    RETURN_IF_ERROR(Get(parent, path, key, out, "a number"));
    if (!std::isfinite(*out)) return Error(parent[key], Join(path, key), "must be a finite number");
    return absl::OkStatus();
  }

  absl::Status Path(const YAML::Node& parent, const std::string& path, const std::string& key, std::string* out) const {
    std::string value;
    RETURN_IF_ERROR(Get(parent, path, key, &value, "a path"));
    if (value.empty()) return absl::OkStatus();
    fs::path p(value);
    if (p.is_absolute()) {
      *out = p.lexically_normal().string();
    } else if (base_dir_.empty()) {
      return Error(parent[key], Join(path, key),
                   absl::StrCat("must be an absolute path here, got '", value,
                                "' (a relative path would resolve on another machine)"));
    } else {
      *out = (fs::path(base_dir_) / p).lexically_normal().string();
    }
    return absl::OkStatus();
  }

  // A dataset: a path, or {sha256: HEX} naming an artifact the coordinator holds.
  absl::Status Dataset(const YAML::Node& parent, const std::string& path, const std::string& key,
                       DatasetRef* out) const {
    YAML::Node n = parent[key];
    if (!n.IsDefined() || n.IsNull()) return absl::OkStatus();
    const std::string full = Join(path, key);
    if (n.IsMap()) {
      RETURN_IF_ERROR(Keys(n, full, {"sha256", "name"}));
      std::string sha, name;
      RETURN_IF_ERROR(Get(n, full, "sha256", &sha, "a sha256 in hex"));
      if (!IsSha256Hex(sha)) return Error(n, Join(full, "sha256"), "must be 64 lower-case hex digits");
      RETURN_IF_ERROR(Get(n, full, "name", &name, "a file name"));
      if (name.find('/') != std::string::npos || name == "." || name == "..")
        return Error(n["name"], Join(full, "name"), "must be a file name without a folder");
      if (use_ == SpecUse::kTraining)
        return Error(n, full,
                     "names an uploaded artifact; only a worker can fetch those: give a local path to train here");
      *out = DatasetRef::Artifact(sha, name);
      return absl::OkStatus();
    }
    std::string local;
    RETURN_IF_ERROR(Path(parent, path, key, &local));
    if (!local.empty()) *out = DatasetRef::Path(local);
    return absl::OkStatus();
  }

  absl::Status AtLeast(const YAML::Node& parent, const std::string& path, const std::string& key, int64_t value,
                       int64_t min) const {
    if (value < min)
      return Error(parent[key], Join(path, key), absl::StrCat("must be at least ", min, ", got ", value));
    return absl::OkStatus();
  }

 private:
  std::string source_;
  std::string base_dir_;
  SpecUse use_;
};

// yaml-cpp keeps both entries of a repeated key and lookups see the first: refuse repeats
// anywhere in the document, naming both lines.
inline absl::Status CheckDuplicateKeys(const Parser& p, const YAML::Node& node, const std::string& path) {
  if (node.IsSequence()) {
    for (const auto& item : node) RETURN_IF_ERROR(CheckDuplicateKeys(p, item, path));
    return absl::OkStatus();
  }
  if (!node.IsMap()) return absl::OkStatus();
  std::map<std::string, int> first_line;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.IsScalar() ? it->first.Scalar() : "?";
    const std::string full = Parser::Join(path, key);
    auto [seen, inserted] = first_line.emplace(key, it->first.Mark().line + 1);
    if (!inserted)
      return p.Error(it->first, full, absl::StrCat("is given twice (first at line ", seen->second, "); keep one"));
    RETURN_IF_ERROR(CheckDuplicateKeys(p, it->second, full));
  }
  return absl::OkStatus();
}

}  // namespace polytune::spec::internal
