#include "polytune/coordinator/artifact_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"
#include "polytune/common/status_macros.h"

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

UploadBudget ArtifactStore::BudgetLocked(int64_t uploaded) const {
  UploadBudget b{std::max<int64_t>(0, limits_.max_artifact_bytes - uploaded),
                 absl::StrCat("--max-artifact-bytes ", limits_.max_artifact_bytes)};
  if (limits_.max_total_bytes > 0) {
    const int64_t left = std::max<int64_t>(0, limits_.max_total_bytes - total_bytes_ - writing_bytes_);
    if (left < b.bytes)
      b = {left, absl::StrCat("--max-storage-bytes ", limits_.max_total_bytes, " (",
                              total_bytes_ + writing_bytes_ - uploaded, " bytes stored)")};  // not counting this one
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
  ASSIGN_OR_RETURN(std::unique_ptr<ArtifactUpload> upload, BeginUpload(expected));
  RETURN_IF_ERROR(upload->Append(data));
  return upload->Commit();
}

absl::StatusOr<std::unique_ptr<ArtifactUpload>> ArtifactStore::BeginUpload(const std::string& expected) {
  if (!IsSha256Hex(expected))
    return absl::InvalidArgumentError(absl::StrCat("'", expected, "' is not a sha256 hex digest"));
  std::error_code ec;
  fs::create_directories(root_ + "/sha256", ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", root_, "/sha256: ", ec.message()));
  // A blob already held is only hashed, to answer DATA_LOSS or OK: it costs no space.
  if (Has(expected)) return std::unique_ptr<ArtifactUpload>(new ArtifactUpload(this, expected, "", -1));
  // A name the constructor's sweep removes after a crash (".tmp-" prefix), unique per upload.
  std::string temp = absl::StrCat(root_, "/sha256/.tmp-", expected, "-XXXXXX");
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create ", temp, ": ", std::strerror(errno)));
  ::fchmod(fd, 0644);
  return std::unique_ptr<ArtifactUpload>(new ArtifactUpload(this, expected, std::move(temp), fd));
}

ArtifactUpload::ArtifactUpload(ArtifactStore* store, std::string expected, std::string temp_path, int fd)
    : store_(store),
      expected_(std::move(expected)),
      temp_path_(std::move(temp_path)),
      fd_(fd),
      already_held_(fd < 0),
      hash_(std::make_unique<Sha256>()) {}

ArtifactUpload::~ArtifactUpload() { Discard(); }

void ArtifactUpload::Discard() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
  temp_path_.clear();
  absl::MutexLock lock(&store_->mu_);
  store_->writing_bytes_ -= reserved_;
  reserved_ = 0;
}

absl::Status ArtifactUpload::Append(absl::string_view bytes) {
  if (done_) return absl::FailedPreconditionError("append to an upload that was committed");
  const auto n = static_cast<int64_t>(bytes.size());
  if (already_held_) {
    size_ += n;
    hash_->Update(bytes);
    return absl::OkStatus();
  }
  {
    // Reserved before they touch the disk, so concurrent uploads together stay within limits.
    absl::MutexLock lock(&store_->mu_);
    const UploadBudget b = store_->BudgetLocked(size_);
    if (n > b.bytes)
      return absl::ResourceExhaustedError(absl::StrCat("upload larger than ", size_ + b.bytes, " bytes, the most ",
                                                       b.limit,
                                                       " allows now; nothing was stored. Raise the limit or "
                                                       "free space"));
    store_->writing_bytes_ += n;
    reserved_ += n;
  }
  size_ += n;
  hash_->Update(bytes);
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t w = ::write(fd_, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("write failed on ", temp_path_, ": ", std::strerror(errno)));
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  // Start the kernel writing what has arrived, so the fsync in Commit() waits for the last
  // few megabytes only, not the whole blob.
  constexpr int64_t kWritebackBytes = int64_t{8} << 20;
  if (size_ - writeback_started_ >= kWritebackBytes) {
    ::sync_file_range(fd_, writeback_started_, size_ - writeback_started_, SYNC_FILE_RANGE_WRITE);
    writeback_started_ = size_;
  }
  return absl::OkStatus();
}

absl::Status ArtifactUpload::Commit() {
  if (done_) return absl::FailedPreconditionError("commit of an upload that was committed");
  done_ = true;
  const std::string actual = hash_->HexDigest();
  if (actual != expected_)
    return absl::DataLossError(absl::StrCat("upload does not match its sha256 (expected ", expected_, ", got ", actual,
                                            "); nothing was stored, upload again"));
  const std::string path = store_->PathOf(expected_);
  // Held already (or landed meanwhile from a concurrent upload): the destructor drops this copy.
  if (already_held_ || store_->Has(expected_)) return absl::OkStatus();
  if (::fsync(fd_) != 0)
    return absl::InternalError(absl::StrCat("fsync failed on ", temp_path_, ": ", std::strerror(errno)));
  ::close(fd_);
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path.c_str()) != 0)
    return absl::InternalError(absl::StrCat("rename failed onto ", path, ": ", std::strerror(errno)));
  committed_ = true;
  RETURN_IF_ERROR(FsyncPath(fs::path(path).parent_path().string()));
  absl::MutexLock lock(&store_->mu_);
  store_->writing_bytes_ -= reserved_;
  store_->total_bytes_ += reserved_;
  reserved_ = 0;  // landed: nothing left to release
  return absl::OkStatus();
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
