// Content-addressed artifacts (uploaded datasets, checkpoint bundles) under
// DATA_DIR/artifacts/sha256/<hex>. A blob is verified against its sha256 before it gets its
// final name (temp file, fsync, rename), so a partial upload is never served.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace polytune::coordinator {

class ArtifactStore {
 public:
  explicit ArtifactStore(std::string root) : root_(std::move(root)) {}
  // Stores `data` if its sha256 equals `expected_sha256` (DATA_LOSS otherwise).
  absl::Status Put(const std::string& data, const std::string& expected_sha256);
  absl::StatusOr<std::string> Get(const std::string& sha256) const;
  bool Has(const std::string& sha256) const;
  std::string PathOf(const std::string& sha256) const;

 private:
  std::string root_;
};

}  // namespace polytune::coordinator
