#include "polytune/common/bundle.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "polytune/common/file_util.h"

namespace polytune {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[] = "PTBUNDLE1\n";

void PutInt(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

bool GetInt(const std::string& in, size_t* pos, int bytes, uint64_t* v) {
  if (*pos + bytes > in.size()) return false;
  *v = 0;
  for (int i = bytes - 1; i >= 0; --i) *v = (*v << 8) | static_cast<unsigned char>(in[*pos + i]);
  *pos += bytes;
  return true;
}

}  // namespace

absl::StatusOr<std::string> PackDirectory(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  if (ec) return absl::NotFoundError(absl::StrCat("cannot list '", dir, "': ", ec.message()));
  std::sort(names.begin(), names.end());
  std::string out = kMagic;
  for (const auto& n : names) {
    auto data = ReadFileToString(dir + "/" + n);
    if (!data.ok()) return data.status();
    PutInt(&out, n.size(), 4);
    out += n;
    PutInt(&out, data->size(), 8);
    out += *data;
  }
  return out;
}

absl::Status UnpackBundle(const std::string& bundle, const std::string& out_dir) {
  const size_t magic = sizeof(kMagic) - 1;
  if (bundle.compare(0, magic, kMagic) != 0) return absl::DataLossError("not a Polytune checkpoint bundle");
  auto staging = MakeStagingDirectory(out_dir);
  if (!staging.ok()) return staging.status();
  size_t pos = magic;
  while (pos < bundle.size()) {
    uint64_t name_len, size;
    if (!GetInt(bundle, &pos, 4, &name_len) || pos + name_len > bundle.size())
      return absl::DataLossError("checkpoint bundle is truncated (file name)");
    const std::string name = bundle.substr(pos, name_len);
    pos += name_len;
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      return absl::DataLossError(absl::StrCat("checkpoint bundle has an unsafe file name '", name, "'"));
    if (!GetInt(bundle, &pos, 8, &size) || pos + size > bundle.size())
      return absl::DataLossError(absl::StrCat("checkpoint bundle is truncated in '", name, "'"));
    absl::Status st = WriteFileAtomic(*staging + "/" + name, absl::string_view(bundle).substr(pos, size));
    if (!st.ok()) return st;
    pos += size;
  }
  return CommitDirectory(*staging, out_dir);
}

}  // namespace polytune
