// Content-addressed artifacts (uploaded datasets, checkpoint bundles) under
// DATA_DIR/artifacts/sha256/<hex>. A blob is verified against its sha256 before it gets its
// final name (temp file, fsync, rename), so a partial upload is never served.
//
// Storage is bounded three ways, so no client can fill the coordinator's disk: one artifact's
// size, the total of all artifacts, and a reserve of free space left on the filesystem. An
// upload that would cross any of them is refused with RESOURCE_EXHAUSTED, naming the limit,
// and leaves nothing behind.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "polytune/common/sha256.h"

namespace polytune::coordinator {

struct ArtifactLimits {
  int64_t max_artifact_bytes = int64_t{4} << 30;   // one upload (--max-artifact-bytes)
  int64_t max_total_bytes = 0;                     // all artifacts together; 0: no cap (--max-storage-bytes)
  int64_t min_free_disk_bytes = int64_t{1} << 30;  // left free on the filesystem (--min-free-disk-bytes)
  // Free bytes on the artifacts' filesystem; null: std::filesystem::space. Tests inject a fake.
  std::function<int64_t()> free_disk_bytes;
};

// How much one upload may bring right now, and the limit that sets it (for the error).
struct UploadBudget {
  int64_t bytes = 0;
  std::string limit;  // e.g. "--max-artifact-bytes 4294967296"
};

class ArtifactStore;

// One upload, written to a temp file as its chunks arrive and hashed on the way (no second
// pass, no buffer of the whole blob). Commit() gives it its final name only if its sha256
// matches; destroyed uncommitted, it leaves nothing behind and releases what it reserved.
class ArtifactUpload {
 public:
  ~ArtifactUpload();
  ArtifactUpload(const ArtifactUpload&) = delete;
  ArtifactUpload& operator=(const ArtifactUpload&) = delete;
  // Appends bytes, reserving them against the store's limits first (RESOURCE_EXHAUSTED,
  // naming the limit, when they do not fit).
  absl::Status Append(absl::string_view bytes);
  // DATA_LOSS unless the bytes hash to the expected sha256; then fsync, rename, fsync the
  // folder. A blob the store already holds is kept once.
  absl::Status Commit();
  int64_t size() const { return size_; }

 private:
  friend class ArtifactStore;
  ArtifactUpload(ArtifactStore* store, std::string expected_sha256, std::string temp_path, int fd);
  void Discard();
  ArtifactStore* store_;
  std::string expected_;
  std::string temp_path_;
  int fd_ = -1;
  int64_t size_ = 0;               // bytes appended
  int64_t reserved_ = 0;           // of them, counted in the store's writing bytes
  int64_t writeback_started_ = 0;  // bytes handed to the kernel's writeback so far
  bool already_held_ = false;      // the store holds this blob: hash only, write nothing
  std::unique_ptr<Sha256> hash_;
  bool done_ = false;       // Commit() was called
  bool committed_ = false;  // the temp file got its final name
};

class ArtifactStore {
 public:
  // Counts what `root` already holds and removes temp files a crash left behind.
  explicit ArtifactStore(std::string root, ArtifactLimits limits = {});
  // Stores `data` if its sha256 equals `expected_sha256` (DATA_LOSS otherwise) and it fits the
  // limits (RESOURCE_EXHAUSTED otherwise). Storing a blob already held is a no-op.
  absl::Status Put(const std::string& data, const std::string& expected_sha256) ABSL_LOCKS_EXCLUDED(mu_);
  // The same in pieces, for uploads streamed in chunks: INVALID_ARGUMENT for a malformed
  // digest, INTERNAL when the temp file cannot be created.
  absl::StatusOr<std::unique_ptr<ArtifactUpload>> BeginUpload(const std::string& expected_sha256);
  absl::StatusOr<std::string> Get(const std::string& sha256) const;
  bool Has(const std::string& sha256) const;
  std::string PathOf(const std::string& sha256) const;
  // The most one upload may bring now; uploads stop reading (and buffering) past it.
  UploadBudget Budget() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t TotalBytes() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class ArtifactUpload;
  int64_t FreeDiskBytes() const;
  // What one upload that has `uploaded` bytes reserved already may still add.
  UploadBudget BudgetLocked(int64_t uploaded = 0) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string root_;
  ArtifactLimits limits_;
  mutable absl::Mutex mu_;
  int64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t writing_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // puts in progress, counted before they land
};

// Parses a byte size: "1048576", "512M", "4G", "1T" (binary units; K, M, G, T with optional
// "i" and "B"). InvalidArgument names `flag`.
absl::StatusOr<int64_t> ParseByteSize(const std::string& text, const std::string& flag);

}  // namespace polytune::coordinator
