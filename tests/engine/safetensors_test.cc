#include "polytune/engine/safetensors.h"

#include <gtest/gtest.h>

#include <fstream>

#include "polytune/common/file_util.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

std::string Header(const std::string& json) {
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json;
}

void WriteRaw(const std::string& path, const std::string& bytes) { ASSERT_TRUE(WriteFileAtomic(path, bytes).ok()); }

TEST(Safetensors, RoundTripsDtypesShapesAndMetadata) {
  testing::TempDir dir;
  std::map<std::string, at::Tensor> t = {{"a", at::randn({3, 5})},
                                         {"b", at::randn({7}).to(at::kBFloat16)},
                                         {"c", at::randn({2, 2, 2}).to(at::kHalf)},
                                         {"d", at::arange(10, at::kLong)},
                                         {"e", at::zeros({0, 4})}};
  ASSERT_TRUE(WriteSafetensors(dir / "x.safetensors", t, {{"format", "pt"}}).ok());
  auto f = SafetensorsFile::Open(dir / "x.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  EXPECT_EQ((*f)->entries().at("b").dtype, "BF16");
  for (const auto& [name, tensor] : t) {
    auto loaded = (*f)->Load(name);
    ASSERT_TRUE(loaded.ok()) << name;
    EXPECT_EQ(loaded->scalar_type(), tensor.scalar_type()) << name;
    EXPECT_TRUE(loaded->equal(tensor)) << name;
  }
}

TEST(Safetensors, TruncatedFileNamesFileAndTensor) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteSafetensors(dir / "x.safetensors", {{"weight", at::randn({16, 16})}}).ok());
  std::string bytes = *ReadFileToString(dir / "x.safetensors");
  WriteRaw(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 100));
  auto f = SafetensorsFile::Open(dir / "cut.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("cut.safetensors"), std::string::npos) << f.status();
  EXPECT_NE(f.status().message().find("'weight'"), std::string::npos) << f.status();
  EXPECT_NE(f.status().message().find("truncated"), std::string::npos) << f.status();

  WriteRaw(dir / "tiny.safetensors", bytes.substr(0, 5));
  EXPECT_NE(SafetensorsFile::Open(dir / "tiny.safetensors").status().message().find("truncated"), std::string::npos);
  WriteRaw(dir / "hdr.safetensors", bytes.substr(0, 20));
  EXPECT_NE(SafetensorsFile::Open(dir / "hdr.safetensors").status().message().find("header"), std::string::npos);
}

TEST(Safetensors, RejectsInconsistentHeaders) {
  testing::TempDir dir;
  struct Case {
    std::string json;
    size_t data;
    std::string expect;
  } cases[] = {
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 12, "trailing"},
      {R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "does not match shape"},
      {R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8, "unknown dtype"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8, "overlaps"},
      {R"({"w":{"dtype":"F32","shape":[2]}})", 8, "data_offsets"},
      {R"([1,2])", 0, "not a JSON object"},
      {R"({"w":)", 0, "not valid JSON"},
      // Found by fuzzing: an element count that wraps to 0 would pass the size check.
      {R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0, "too many elements"},
      {R"({"w":{"dtype":"F32","shape":[1e999],"data_offsets":[0,0]}})", 0, "not valid JSON"},
      {R"({"w":{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,0]}})", 0,
       "shape entries must be non-negative integers"},
  };
  for (const auto& c : cases) {
    WriteRaw(dir / "bad.safetensors", Header(c.json) + std::string(c.data, '\0'));
    auto f = SafetensorsFile::Open(dir / "bad.safetensors");
    ASSERT_FALSE(f.ok()) << c.json;
    EXPECT_NE(f.status().message().find(c.expect), std::string::npos) << c.json << " -> " << f.status();
  }
  std::string huge(8, '\xff');
  WriteRaw(dir / "huge.safetensors", huge + "{}");
  EXPECT_NE(SafetensorsFile::Open(dir / "huge.safetensors").status().message().find("100 MB"), std::string::npos);
}

TEST(Safetensors, EmptyTensorsLoadAndBytesInMemoryValidateLikeFiles) {
  std::string json = R"({"e":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"w":{"dtype":"F32","shape":[1],)"
                     R"("data_offsets":[0,4]}})";
  auto f = SafetensorsFile::FromBytes(Header(json) + std::string(4, '\0'), "mem.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  auto empty = (*f)->Load("e");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->numel(), 0);
  auto bad = SafetensorsFile::FromBytes(Header(json), "mem.safetensors");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("mem.safetensors: tensor 'w'"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace polytune::engine
