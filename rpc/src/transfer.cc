#include "polytune/rpc/transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "polytune/common/bundle.h"
#include "polytune/common/file_util.h"

namespace polytune::rpc {
namespace fs = std::filesystem;

absl::Status Sha256Mismatch(const std::string& expected, const std::string& actual, const std::string& what) {
  if (actual == expected) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(what, " does not match its sha256 (expected ", expected, ", got ", actual,
                                          "); it was corrupted in transit or at rest; try again"));
}

absl::Status VerifySha256(const std::string& data, const std::string& expected, const std::string& what) {
  return Sha256Mismatch(expected, Sha256Hex(data), what);
}

grpc::Status StreamFile(grpc::ServerWriterInterface<v1::DownloadChunk>* writer, const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return grpc::Status(grpc::StatusCode::INTERNAL, absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
  const int64_t size = st.st_size;
  int64_t pos = 0;
  do {
    v1::DownloadChunk c;
    if (pos == 0) c.set_total_bytes(size);
    const int64_t n = std::min<int64_t>(kMaxChunkBytes, size - pos);
    std::string* buffer = c.mutable_data();
    buffer->resize(n);  // read straight into the message: no copy of the whole file
    for (int64_t done = 0; done < n;) {
      const ssize_t got = ::pread(fd, buffer->data() + done, n - done, pos + done);
      if (got <= 0)
        return grpc::Status(grpc::StatusCode::INTERNAL,
                            absl::StrCat("reading ", path, " at byte ", pos + done, ": ",
                                         got == 0 ? "the file ended early" : std::strerror(errno)));
      done += got;
    }
    if (!writer->Write(c)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    pos += n;
  } while (pos < size);
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
