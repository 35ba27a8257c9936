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
