#include "polytune/coordinator/artifact_store.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"

namespace polytune::coordinator {
namespace fs = std::filesystem;

ArtifactStore::ArtifactStore(std::string root, ArtifactLimits limits) : root_(std::move(root)), limits_(limits) {
  std::error_code ec;
  int64_t total = 0;
  for (const auto& e : fs::directory_iterator(root_ + "/sha256", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0) {  // an upload a crash cut short: never served, never counted
      fs::remove(e.path(), ec);
      continue;
    }
    const auto size = e.file_size(ec);
    if (!ec) total += static_cast<int64_t>(size);
  }
  absl::MutexLock lock(&mu_);
  total_bytes_ = total;
}

std::string ArtifactStore::PathOf(const std::string& sha) const { return absl::StrCat(root_, "/sha256/", sha); }

int64_t ArtifactStore::FreeDiskBytes() const {
  if (limits_.free_disk_bytes) return limits_.free_disk_bytes();
  std::error_code ec;
  const fs::space_info s = fs::space(root_, ec);
  if (ec) return std::numeric_limits<int64_t>::max();  // unknown: the other limits still hold
  return static_cast<int64_t>(std::min<uintmax_t>(s.available, std::numeric_limits<int64_t>::max()));
}

UploadBudget ArtifactStore::BudgetLocked() const {
  UploadBudget b{limits_.max_artifact_bytes, absl::StrCat("--max-artifact-bytes ", limits_.max_artifact_bytes)};
  if (limits_.max_total_bytes > 0) {
    const int64_t left = std::max<int64_t>(0, limits_.max_total_bytes - total_bytes_ - writing_bytes_);
    if (left < b.bytes)
      b = {left, absl::StrCat("--max-storage-bytes ", limits_.max_total_bytes, " (", total_bytes_ + writing_bytes_,
                              " bytes stored)")};
  }
  const int64_t free = FreeDiskBytes();
  const int64_t usable = std::max<int64_t>(0, free - writing_bytes_ - limits_.min_free_disk_bytes);
  if (usable < b.bytes)
    b = {usable, absl::StrCat("the disk's free space (", free, " bytes free, --min-free-disk-bytes ",
                              limits_.min_free_disk_bytes, " kept free)")};
  return b;
}

UploadBudget ArtifactStore::Budget() const {
  absl::MutexLock lock(&mu_);
  return BudgetLocked();
}

int64_t ArtifactStore::TotalBytes() const {
  absl::MutexLock lock(&mu_);
  return total_bytes_;
}

absl::Status ArtifactStore::Put(const std::string& data, const std::string& expected) {
  if (!IsSha256Hex(expected))
    return absl::InvalidArgumentError(absl::StrCat("'", expected, "' is not a sha256 hex digest"));
  const std::string actual = Sha256Hex(data);
  if (actual != expected)
    return absl::DataLossError(absl::StrCat("upload does not match its sha256 (expected ", expected, ", got ", actual,
                                            "); nothing was stored, upload again"));
  if (Has(expected)) return absl::OkStatus();
  const auto size = static_cast<int64_t>(data.size());
  {
    // Checked again here, under the lock: concurrent uploads each within the budget they read
    // could together cross it.
    absl::MutexLock lock(&mu_);
    UploadBudget b = BudgetLocked();
    if (size > b.bytes)
      return absl::ResourceExhaustedError(absl::StrCat("an artifact of ", size, " bytes does not fit ", b.limit,
                                                       "; nothing was stored. Raise the limit or free space"));
    writing_bytes_ += size;
  }
  std::error_code ec;
  fs::create_directories(root_ + "/sha256", ec);
  absl::Status st = ec ? absl::InternalError(absl::StrCat("cannot create ", root_, "/sha256: ", ec.message()))
                       : WriteFileAtomic(PathOf(expected), data);
  absl::MutexLock lock(&mu_);
  writing_bytes_ -= size;
  if (st.ok()) total_bytes_ += size;
  return st;
}

absl::StatusOr<std::string> ArtifactStore::Get(const std::string& sha) const {
  if (!IsSha256Hex(sha)) return absl::InvalidArgumentError(absl::StrCat("'", sha, "' is not a sha256 hex digest"));
  if (!Has(sha)) return absl::NotFoundError(absl::StrCat("no artifact ", sha));
  return ReadFileToString(PathOf(sha));
}

bool ArtifactStore::Has(const std::string& sha) const { return IsSha256Hex(sha) && fs::exists(PathOf(sha)); }

absl::StatusOr<int64_t> ParseByteSize(const std::string& text, const std::string& flag) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  std::string unit = text.substr(digits);
  for (const char* suffix : {"iB", "B", "i"})
    if (unit.size() > 1 && unit.size() - std::string(suffix).size() == 1 &&
        unit.compare(1, std::string::npos, suffix) == 0) {
      unit = unit.substr(0, 1);
      break;
    }
  int shift = -1;
  if (unit.empty()) shift = 0;
  if (unit == "K" || unit == "k") shift = 10;
  if (unit == "M") shift = 20;
  if (unit == "G") shift = 30;
  if (unit == "T") shift = 40;
  uint64_t value = 0;
  if (digits == 0 || shift < 0 || !absl::SimpleAtoi(text.substr(0, digits), &value) ||
      value > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) >> shift))
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " '", text, "' is not a byte size like 1048576, 512M or 4G (binary units)"));
  return static_cast<int64_t>(value << shift);
}

}  // namespace polytune::coordinator
