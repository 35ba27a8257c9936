#include "polytune/common/file_util.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "../engine/test_util.h"

namespace polytune {
namespace {

TEST(FileUtil, WriteFileAtomicReplacesContentAndLeavesNoTemporaries) {
  testing::TempDir dir;
  const std::string path = dir / "a.txt";
  ASSERT_TRUE(WriteFileAtomic(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second").ok());
  EXPECT_EQ(*ReadFileToString(path), "second");
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(FileUtil, CommitDirectoryPublishesWholeFolderAndReplacesOldOne) {
  testing::TempDir dir;
  const std::string final_dir = dir / "ckpt";
  for (const char* content : {"v1", "v2"}) {
    auto staging = MakeStagingDirectory(final_dir);
    ASSERT_TRUE(staging.ok());
    EXPECT_NE(staging->find(".tmp-"), std::string::npos);
    ASSERT_TRUE(WriteFileAtomic(*staging + "/f", content).ok());
    ASSERT_TRUE(CommitDirectory(*staging, final_dir).ok());
    EXPECT_EQ(*ReadFileToString(final_dir + "/f"), content);
  }
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1) << "staging or old folders were left behind";
}

TEST(FileUtil, ReadMissingFileNamesIt) {
  auto r = ReadFileToString("/nonexistent/polytune/x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/polytune/x"), std::string::npos);
}

}  // namespace
}  // namespace polytune
