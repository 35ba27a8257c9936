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

#include "polytune/common/bundle.h"
#include "polytune/common/sha256.h"

namespace polytune {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.Update("a");
  h.Update("bc");
  EXPECT_EQ(h.HexDigest(), Sha256Hex("abc"));
  EXPECT_TRUE(IsSha256Hex(Sha256Hex("x")));
  EXPECT_FALSE(IsSha256Hex("ABC"));
}

TEST(Bundle, RoundTripAndRejectsDamage) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir / "src");
  ASSERT_TRUE(WriteFileAtomic(dir / "src/adapter_config.json", "{\"r\": 8}").ok());
  ASSERT_TRUE(WriteFileAtomic(dir / "src/adapter_model.safetensors", std::string(1000, '\x07')).ok());
  auto packed = PackDirectory(dir / "src");
  ASSERT_TRUE(packed.ok()) << packed.status();
  ASSERT_TRUE(UnpackBundle(*packed, dir / "out").ok());
  EXPECT_EQ(*ReadFileToString(dir / "out/adapter_config.json"), "{\"r\": 8}");
  EXPECT_EQ(ReadFileToString(dir / "out/adapter_model.safetensors")->size(), 1000u);
  EXPECT_NE(UnpackBundle(packed->substr(0, packed->size() - 10), dir / "cut").message().find("truncated"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "cut")) << "a damaged bundle never appears under its final name";
  EXPECT_NE(UnpackBundle("garbage", dir / "g").message().find("not a Polytune"), std::string::npos);
}

}  // namespace
}  // namespace polytune
