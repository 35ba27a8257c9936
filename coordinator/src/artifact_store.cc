#include "polytune/coordinator/artifact_store.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"

namespace polytune::coordinator {

std::string ArtifactStore::PathOf(const std::string& sha) const { return absl::StrCat(root_, "/sha256/", sha); }

absl::Status ArtifactStore::Put(const std::string& data, const std::string& expected) {
  if (!IsSha256Hex(expected))
    return absl::InvalidArgumentError(absl::StrCat("'", expected, "' is not a sha256 hex digest"));
  const std::string actual = Sha256Hex(data);
  if (actual != expected)
    return absl::DataLossError(absl::StrCat("upload does not match its sha256 (expected ", expected, ", got ", actual,
                                            "); nothing was stored, upload again"));
  if (Has(expected)) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(root_ + "/sha256", ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", root_, "/sha256: ", ec.message()));
  return WriteFileAtomic(PathOf(expected), data);
}

absl::StatusOr<std::string> ArtifactStore::Get(const std::string& sha) const {
  if (!IsSha256Hex(sha)) return absl::InvalidArgumentError(absl::StrCat("'", sha, "' is not a sha256 hex digest"));
  if (!Has(sha)) return absl::NotFoundError(absl::StrCat("no artifact ", sha));
  return ReadFileToString(PathOf(sha));
}

bool ArtifactStore::Has(const std::string& sha) const {
  return IsSha256Hex(sha) && std::filesystem::exists(PathOf(sha));
}

}  // namespace polytune::coordinator
