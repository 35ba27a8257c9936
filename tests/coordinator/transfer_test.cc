// The download path's two ends without a network: StreamFile's chunks from a file, and
// DownloadVerified's incremental sha256 over what a (fake) stream delivers.
#include "polytune/rpc/transfer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

namespace polytune::rpc {
namespace {
namespace fs = std::filesystem;

class CapturingWriter : public grpc::ServerWriterInterface<v1::DownloadChunk> {
 public:
  void SendInitialMetadata() override {}
  bool Write(const v1::DownloadChunk& msg, grpc::WriteOptions) override {
    if (accept_ == 0) return false;
    --accept_;
    chunks.push_back(msg);
    return true;
  }
  void AcceptOnly(int n) { accept_ = n; }
  std::vector<v1::DownloadChunk> chunks;

 private:
  int accept_ = 1 << 30;
};

class ReplayReader : public grpc::ClientReaderInterface<v1::DownloadChunk> {
 public:
  ReplayReader(std::vector<v1::DownloadChunk> chunks, grpc::Status end)
      : chunks_(std::move(chunks)), end_(std::move(end)) {}
  grpc::Status Finish() override { return end_; }
  bool NextMessageSize(uint32_t* sz) override {
    *sz = next_ < chunks_.size() ? static_cast<uint32_t>(chunks_[next_].ByteSizeLong()) : 0;
    return next_ < chunks_.size();
  }
  bool Read(v1::DownloadChunk* msg) override {
    if (next_ == chunks_.size()) return false;
    *msg = chunks_[next_++];
    return true;
  }
  void WaitForInitialMetadata() override {}

 private:
  std::vector<v1::DownloadChunk> chunks_;
  grpc::Status end_;
  size_t next_ = 0;
};

// What DownloadVerified needs of a stub: Download(ctx, req) -> a reader.
struct ReplayStub {
  std::vector<v1::DownloadChunk> chunks;
  std::string asked;
  grpc::Status end = grpc::Status::OK;  // how the stream ends after the chunks
  std::unique_ptr<grpc::ClientReaderInterface<v1::DownloadChunk>> Download(grpc::ClientContext*,
                                                                           const v1::DownloadRequest& req) {
    asked = req.sha256();
    return std::make_unique<ReplayReader>(chunks, end);
  }
};

class Transfer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("polytune_transfer_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string WriteFile(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  fs::path dir_;
};

TEST_F(Transfer, StreamFileSendsChunksOfAtMostTheLimitAndTheSizeFirst) {
  std::string data(2 * kMaxChunkBytes + kMaxChunkBytes / 2, '\0');
  std::mt19937 rng(3);
  for (char& c : data) c = static_cast<char>(rng());
  CapturingWriter w;
  ASSERT_TRUE(StreamFile(&w, WriteFile("blob", data)).ok());
  ASSERT_EQ(w.chunks.size(), 3u);
  std::string joined;
  for (size_t i = 0; i < w.chunks.size(); ++i) {
    EXPECT_LE(w.chunks[i].data().size(), static_cast<size_t>(kMaxChunkBytes));
    EXPECT_EQ(w.chunks[i].total_bytes(), i == 0 ? static_cast<int64_t>(data.size()) : 0) << i;
    joined += w.chunks[i].data();
  }
  EXPECT_EQ(joined, data);

  // The same chunks through the client: returned when the digest matches.
  ReplayStub stub{w.chunks, ""};
  const std::string sha = Sha256Hex(data);
  auto back = DownloadVerified(stub, sha);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, data);
  EXPECT_EQ(stub.asked, sha);
  // One flipped byte in transit: DATA_LOSS, nothing returned.
  stub.chunks[1].mutable_data()->at(7) ^= 1;
  auto corrupted = DownloadVerified(stub, sha);
  EXPECT_EQ(corrupted.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(corrupted.status().message()).find("does not match its sha256"), std::string::npos);
}

TEST_F(Transfer, StreamFileEdges) {
  CapturingWriter empty;
  ASSERT_TRUE(StreamFile(&empty, WriteFile("empty", "")).ok());
  ASSERT_EQ(empty.chunks.size(), 1u) << "an empty artifact is one empty chunk";
  EXPECT_EQ(empty.chunks[0].data(), "");
  ReplayStub stub{empty.chunks, ""};
  auto back = DownloadVerified(stub, Sha256Hex(""));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, "");

  CapturingWriter missing;
  EXPECT_EQ(StreamFile(&missing, (dir_ / "nope").string()).error_code(), grpc::StatusCode::NOT_FOUND);

  CapturingWriter gone;  // the client disconnects after the first chunk
  gone.AcceptOnly(1);
  EXPECT_EQ(StreamFile(&gone, WriteFile("big", std::string(2 * kMaxChunkBytes, 'x'))).error_code(),
            grpc::StatusCode::CANCELLED);
}

// The assembler is then dropped with chunks it never finished: its thread must stop (a hang
// here is a ctest timeout).
TEST_F(Transfer, DownloadThatFailsMidStreamReturnsTheErrorAndNothingElse) {
  std::vector<v1::DownloadChunk> chunks(3 * ChunkAssembler::kMaxQueuedChunks);
  for (auto& c : chunks) c.set_data(std::string(1000, 'a'));
  ReplayStub stub{chunks, ""};
  stub.end = grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset");
  auto back = DownloadVerified(stub, Sha256Hex(std::string(chunks.size() * 1000, 'a')));
  EXPECT_EQ(back.status().code(), absl::StatusCode::kUnavailable);
}

// Chunks of uneven sizes, many more than the queue holds (so Add() waits for the helper
// thread at times): the whole and its hash equal the single-threaded result.
TEST(ChunkAssembler, JoinsAndHashesLikeOnePass) {
  std::mt19937 rng(11);
  for (size_t reserve : {size_t{0}, size_t{1} << 20}) {
    std::string whole;
    ChunkAssembler assembler(reserve);
    for (int i = 0; i < 200; ++i) {
      std::string chunk(rng() % 20000, '\0');
      for (char& c : chunk) c = static_cast<char>(rng());
      whole += chunk;
      assembler.Add(std::move(chunk));
    }
    ChunkAssembler::Result result = assembler.Finish();
    EXPECT_EQ(result.data, whole);
    EXPECT_EQ(result.sha256_hex, Sha256Hex(whole));
  }
  ChunkAssembler nothing;
  ChunkAssembler::Result empty = nothing.Finish();
  EXPECT_EQ(empty.data, "");
  EXPECT_EQ(empty.sha256_hex, Sha256Hex(""));
}

}  // namespace
}  // namespace polytune::rpc
