// The artifact store's limits: one artifact, all artifacts, and free disk kept in reserve; a
// refused upload leaves nothing behind and a crash's temp files are neither served nor counted.
#include "polytune/coordinator/artifact_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "polytune/common/sha256.h"

namespace polytune::coordinator {
namespace {

namespace fs = std::filesystem;

class ArtifactStoreTest : public ::testing::Test {
 protected:
  ArtifactStoreTest() {
    char t[] = "/tmp/polytune-artifacts-XXXXXX";
    dir_ = ::mkdtemp(t);
  }
  ~ArtifactStoreTest() override { fs::remove_all(dir_); }

  // Files under sha256/, temp files included.
  int Files() const {
    int n = 0;
    std::error_code ec;
    for (auto it = fs::directory_iterator(dir_ + "/sha256", ec); !ec && it != fs::directory_iterator(); ++it) ++n;
    return n;
  }

  // Begins an upload announcing `sha`, appends `bytes` and commits; the upload is gone after.
  static absl::Status StreamAndCommit(ArtifactStore& store, const std::string& sha, absl::string_view bytes) {
    auto upload = store.BeginUpload(sha);
    if (!upload.ok()) return upload.status();
    absl::Status st = (*upload)->Append(bytes);
    return st.ok() ? (*upload)->Commit() : st;
  }

  std::string dir_;
};

TEST_F(ArtifactStoreTest, AnArtifactOverTheSizeLimitIsRefusedNamingTheFlagAndLeavesNothing) {
  ArtifactLimits limits;
  limits.max_artifact_bytes = 1000;
  ArtifactStore store(dir_, limits);
  EXPECT_EQ(store.Budget().bytes, 1000);
  const std::string big(1001, 'x');
  absl::Status st = store.Put(big, Sha256Hex(big));
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("--max-artifact-bytes 1000"), std::string::npos) << st;
  EXPECT_FALSE(store.Has(Sha256Hex(big)));
  EXPECT_EQ(Files(), 0);
  const std::string fits(1000, 'y');
  EXPECT_TRUE(store.Put(fits, Sha256Hex(fits)).ok());
  EXPECT_EQ(store.TotalBytes(), 1000);
}

TEST_F(ArtifactStoreTest, TheStorageCapCountsWhatIsStoredAlsoAfterARestart) {
  ArtifactLimits limits;
  limits.max_total_bytes = 2500;
  limits.min_free_disk_bytes = 0;
  const std::string a(1000, 'a'), b(1000, 'b'), c(1000, 'c');
  {
    ArtifactStore store(dir_, limits);
    ASSERT_TRUE(store.Put(a, Sha256Hex(a)).ok());
    ASSERT_TRUE(store.Put(b, Sha256Hex(b)).ok());
    EXPECT_TRUE(store.Put(b, Sha256Hex(b)).ok()) << "a blob already held costs nothing";
    EXPECT_EQ(store.TotalBytes(), 2000);
    EXPECT_EQ(store.Budget().bytes, 500);
  }
  // A crash mid-write left a temp file: removed at start, never counted or served.
  std::ofstream(dir_ + "/sha256/.tmp-" + Sha256Hex(c) + "-abc123") << std::string(700, 'c');
  ArtifactStore reopened(dir_, limits);
  EXPECT_EQ(reopened.TotalBytes(), 2000);
  EXPECT_EQ(Files(), 2);
  absl::Status st = reopened.Put(c, Sha256Hex(c));
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("--max-storage-bytes 2500 (2000 bytes stored)"), std::string::npos) << st;
  EXPECT_FALSE(reopened.Has(Sha256Hex(c)));
  EXPECT_EQ(Files(), 2);
}

TEST_F(ArtifactStoreTest, UploadsStopBeforeTheDiskReserve) {
  int64_t free = 5000;
  ArtifactLimits limits;
  limits.min_free_disk_bytes = 3000;
  limits.free_disk_bytes = [&free] { return free; };
  ArtifactStore store(dir_, limits);
  UploadBudget b = store.Budget();
  EXPECT_EQ(b.bytes, 2000);
  EXPECT_NE(b.limit.find("5000 bytes free, --min-free-disk-bytes 3000 kept free"), std::string::npos) << b.limit;
  const std::string big(2001, 'z'), fits(2000, 'w');
  EXPECT_EQ(store.Put(big, Sha256Hex(big)).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(store.Put(fits, Sha256Hex(fits)).ok());
  free = 2500;  // the disk filled up from elsewhere
  EXPECT_EQ(store.Budget().bytes, 0);
}

TEST_F(ArtifactStoreTest, ACorruptUploadIsDataLossAndStoresNothing) {
  ArtifactStore store(dir_);
  const std::string data = "payload";
  absl::Status st = store.Put(data, Sha256Hex("other"));
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Files(), 0);
  EXPECT_EQ(store.Put(data, "not-a-digest").code(), absl::StatusCode::kInvalidArgument);
}

// Streamed uploads: chunk by chunk to a temp file, hashed on the way.
TEST_F(ArtifactStoreTest, AStreamedUploadEqualsPutAndLandsOnlyOnCommit) {
  ArtifactStore store(dir_);
  std::string blob;
  for (int i = 0; i < 300000; ++i) blob.push_back(static_cast<char>(i * 131 % 251));
  const std::string sha = Sha256Hex(blob);
  auto upload = store.BeginUpload(sha);
  ASSERT_TRUE(upload.ok()) << upload.status();
  for (size_t pos = 0; pos < blob.size(); pos += 65536)
    ASSERT_TRUE((*upload)->Append(absl::string_view(blob).substr(pos, 65536)).ok());
  EXPECT_FALSE(store.Has(sha)) << "not served before it is verified";
  EXPECT_EQ(Files(), 1) << "only the temp file";
  ASSERT_TRUE((*upload)->Commit().ok());
  EXPECT_EQ((*upload)->size(), static_cast<int64_t>(blob.size()));
  upload->reset();
  EXPECT_EQ(*store.Get(sha), blob);
  EXPECT_EQ(store.TotalBytes(), static_cast<int64_t>(blob.size()));
  EXPECT_EQ(Files(), 1);
}

TEST_F(ArtifactStoreTest, AnAbandonedOrCorruptStreamLeavesNothingAndReleasesItsReservation) {
  ArtifactLimits limits;
  limits.max_total_bytes = 10000;
  ArtifactStore store(dir_, limits);
  const std::string blob(6000, 'x');
  {
    auto upload = store.BeginUpload(Sha256Hex(blob));
    ASSERT_TRUE(upload.ok());
    ASSERT_TRUE((*upload)->Append(blob.substr(0, 4000)).ok());
    EXPECT_EQ(store.Budget().bytes, 6000) << "the bytes on their way are reserved";
    EXPECT_EQ(Files(), 1);
  }  // the client went away
  EXPECT_EQ(Files(), 0);
  EXPECT_EQ(store.Budget().bytes, 10000);
  EXPECT_EQ(StreamAndCommit(store, Sha256Hex(blob), blob.substr(1)).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Files(), 0);
  EXPECT_EQ(store.TotalBytes(), 0);
  EXPECT_EQ(store.Budget().bytes, 10000);
}

TEST_F(ArtifactStoreTest, AStreamIsRefusedAtTheChunkThatCrossesALimit) {
  ArtifactLimits limits;
  limits.max_artifact_bytes = 5000;
  ArtifactStore store(dir_, limits);
  const std::string blob(8000, 'y');
  auto upload = store.BeginUpload(Sha256Hex(blob));
  ASSERT_TRUE((*upload)->Append(blob.substr(0, 3000)).ok());
  absl::Status st = (*upload)->Append(blob.substr(3000, 3000));
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("--max-artifact-bytes 5000"), std::string::npos) << st;
  upload->reset();
  EXPECT_EQ(Files(), 0);
}

TEST_F(ArtifactStoreTest, StreamingABlobAlreadyHeldCostsNoSpaceButIsStillVerified) {
  ArtifactLimits limits;
  limits.max_total_bytes = 5000;
  ArtifactStore store(dir_, limits);
  const std::string blob(4000, 'z');
  ASSERT_TRUE(store.Put(blob, Sha256Hex(blob)).ok());
  // 4000 bytes more would cross the cap, but none are written.
  EXPECT_TRUE(StreamAndCommit(store, Sha256Hex(blob), blob).ok());
  EXPECT_EQ(StreamAndCommit(store, Sha256Hex(blob), blob.substr(1)).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store.TotalBytes(), 4000);
  EXPECT_EQ(Files(), 1);
}

TEST(ParseByteSize, AcceptsBinaryUnitsAndNamesTheFlagOtherwise) {
  EXPECT_EQ(*ParseByteSize("1048576", "--x"), 1048576);
  EXPECT_EQ(*ParseByteSize("512M", "--x"), int64_t{512} << 20);
  EXPECT_EQ(*ParseByteSize("4G", "--x"), int64_t{4} << 30);
  EXPECT_EQ(*ParseByteSize("4GiB", "--x"), int64_t{4} << 30);
  EXPECT_EQ(*ParseByteSize("2KB", "--x"), 2048);
  EXPECT_EQ(*ParseByteSize("1T", "--x"), int64_t{1} << 40);
  EXPECT_EQ(*ParseByteSize("0", "--x"), 0);
  for (const char* bad : {"", "G", "-1", "1.5G", "4X", "99999999999T", "4 G"}) {
    auto r = ParseByteSize(bad, "--max-storage-bytes");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--max-storage-bytes '"), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace polytune::coordinator
