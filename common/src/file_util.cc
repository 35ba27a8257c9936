#include "polytune/common/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace polytune {
namespace fs = std::filesystem;

namespace {
absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " '", path, "': ", std::strerror(errno)));
}

std::string RandomSuffix() {
  std::random_device rd;
  std::mt19937_64 gen(rd() ^ (static_cast<uint64_t>(::getpid()) << 32));
  return absl::StrCat(gen() & 0xffffffffffULL);
}
}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return ErrnoError("error reading", path);
  return ss.str();
}

absl::Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open for fsync", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync failed on", path);
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const std::string& path, absl::string_view contents) {
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmp = (dir / absl::StrCat(".tmp-", target.filename().string(), "-", RandomSuffix())).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", tmp);
  const char* p = contents.data();
  size_t left = contents.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status st = ErrnoError("write failed on", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return st;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    absl::Status st = ErrnoError("fsync failed on", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status st = ErrnoError("rename failed onto", path);
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncPath(dir.string());
}

absl::StatusOr<std::string> MakeStagingDirectory(const std::string& final_dir) {
  fs::path target(final_dir);
  fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create '", parent.string(), "': ", ec.message()));
  fs::path staging = parent / absl::StrCat(".tmp-", target.filename().string(), "-", RandomSuffix());
  fs::create_directory(staging, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create '", staging.string(), "': ", ec.message()));
  return staging.string();
}

absl::Status CommitDirectory(const std::string& staging_dir, const std::string& final_dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(staging_dir, ec)) {
    if (entry.is_regular_file()) {
      absl::Status st = FsyncPath(entry.path().string());
      if (!st.ok()) return st;
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list '", staging_dir, "': ", ec.message()));
  absl::Status st = FsyncPath(staging_dir);
  if (!st.ok()) return st;
  if (fs::exists(final_dir)) {
    // Move the old one aside first so that a crash never leaves neither.
    std::string old = absl::StrCat(final_dir, ".old-", RandomSuffix());
    fs::rename(final_dir, old, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot move aside '", final_dir, "': ", ec.message()));
    fs::rename(staging_dir, final_dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot rename onto '", final_dir, "': ", ec.message()));
    fs::remove_all(old, ec);
  } else {
    fs::rename(staging_dir, final_dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot rename onto '", final_dir, "': ", ec.message()));
  }
  fs::path parent = fs::path(final_dir).has_parent_path() ? fs::path(final_dir).parent_path() : fs::path(".");
  return FsyncPath(parent.string());
}

}  // namespace polytune
