#include "polytune/rpc/transfer.h"

#include <filesystem>

#include "polytune/common/bundle.h"
#include "polytune/common/file_util.h"

namespace polytune::rpc {
namespace fs = std::filesystem;

absl::Status VerifySha256(const std::string& data, const std::string& expected, const std::string& what) {
  const std::string actual = Sha256Hex(data);
  if (actual == expected) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(what, " does not match its sha256 (expected ", expected, ", got ", actual,
                                          "); it was corrupted in transit or at rest; try again"));
}

grpc::Status StreamChunks(grpc::ServerWriterInterface<v1::DownloadChunk>* writer, const std::string& data) {
  for (size_t pos = 0; pos < data.size() || pos == 0; pos += kMaxChunkBytes) {
    v1::DownloadChunk c;
    c.mutable_data()->assign(data, pos, kMaxChunkBytes);
    if (!writer->Write(c)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    if (data.empty()) break;
  }
  return grpc::Status::OK;
}

absl::Status CommitVerifiedFile(const std::string& data, const std::string& path) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create the folder of ", path, ": ", ec.message()));
  return WriteFileAtomic(path, data);
}

namespace {

// Unpacks `bundle` next to `dir` (a fresh DIR.unpack folder) and returns that folder.
absl::StatusOr<std::string> UnpackNextTo(const std::string& bundle, const std::string& dir) {
  const std::string unpacked = dir + ".unpack";
  std::error_code ec;
  fs::remove_all(unpacked, ec);
  absl::Status st = UnpackBundle(bundle, unpacked);
  if (!st.ok()) return st;
  return unpacked;
}

}  // namespace

absl::Status CommitBundleToDirectory(const std::string& bundle, const std::string& dir,
                                     const std::vector<std::string>& files) {
  auto unpacked_or = UnpackNextTo(bundle, dir);
  if (!unpacked_or.ok()) return unpacked_or.status();
  const std::string& unpacked = *unpacked_or;
  std::error_code ec;
  auto staging = MakeStagingDirectory(dir);
  if (!staging.ok()) return staging.status();
  std::vector<std::string> names = files;
  if (names.empty())
    for (const auto& e : fs::directory_iterator(unpacked)) names.push_back(e.path().filename().string());
  for (const auto& f : names) {
    fs::copy_file(unpacked + "/" + f, *staging + "/" + f, ec);
    if (ec) {
      fs::remove_all(*staging);
      fs::remove_all(unpacked);
      return absl::DataLossError(absl::StrCat("the download has no ", f, ": ", ec.message()));
    }
  }
  fs::remove_all(unpacked, ec);
  return CommitDirectory(*staging, dir);
}

absl::Status CommitBundleFilesInto(const std::string& bundle, const std::string& dir,
                                   const std::vector<std::string>& files) {
  auto unpacked_or = UnpackNextTo(bundle, dir);
  if (!unpacked_or.ok()) return unpacked_or.status();
  const std::string& unpacked = *unpacked_or;
  std::error_code ec;
  absl::Status st;
  for (const auto& f : files) {
    auto data = ReadFileToString(unpacked + "/" + f);
    if (!data.ok()) {
      fs::remove_all(unpacked, ec);
      return absl::DataLossError(absl::StrCat("the download has no ", f));
    }
    st = WriteFileAtomic(dir + "/" + f, *data);
    if (!st.ok()) break;
  }
  fs::remove_all(unpacked, ec);
  return st;
}

}  // namespace polytune::rpc
