#include "polytune/engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "polytune/common/file_util.h"

namespace polytune::engine {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100000000;

struct DtypeInfo {
  const char* name;
  int64_t bytes;
  bool loadable;
  at::ScalarType type;
};

const DtypeInfo kDtypes[] = {
    {"BOOL", 1, false, at::kBool},    {"U8", 1, true, at::kByte},       {"I8", 1, true, at::kChar},
    {"F8_E5M2", 1, false, at::kByte}, {"F8_E4M3", 1, false, at::kByte}, {"I16", 2, false, at::kShort},
    {"U16", 2, false, at::kShort},    {"F16", 2, true, at::kHalf},      {"BF16", 2, true, at::kBFloat16},
    {"I32", 4, true, at::kInt},       {"U32", 4, false, at::kInt},      {"F32", 4, true, at::kFloat},
    {"F64", 8, true, at::kDouble},    {"I64", 8, true, at::kLong},      {"U64", 8, false, at::kLong},
};

const DtypeInfo* FindDtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

}  // namespace

absl::StatusOr<std::string> SafetensorsDtypeName(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return std::string("F32");
    case at::kHalf:
      return std::string("F16");
    case at::kBFloat16:
      return std::string("BF16");
    case at::kDouble:
      return std::string("F64");
    case at::kLong:
      return std::string("I64");
    case at::kInt:
      return std::string("I32");
    case at::kByte:
      return std::string("U8");
    case at::kChar:
      return std::string("I8");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dtype ", c10::toString(type), " cannot be written to safetensors"));
  }
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": cannot stat: ", std::strerror(errno)));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": truncated safetensors file (", size, " bytes, shorter than the 8-byte header length)"));
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
  file->map_ = static_cast<const uint8_t*>(m);
  file->map_size_ = size;
  file->mapped_ = true;
  absl::Status parsed = file->ParseHeader();
  if (!parsed.ok()) return parsed;
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(std::string bytes,
                                                                            const std::string& name) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = name;
  if (bytes.size() < 8)
    return absl::InvalidArgumentError(absl::StrCat(name, ": truncated safetensors file (", bytes.size(),
                                                   " bytes, shorter than the 8-byte header length)"));
  file->owned_ = std::move(bytes);
  file->map_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
  file->map_size_ = file->owned_.size();
  absl::Status st = file->ParseHeader();
  if (!st.ok()) return st;
  return file;
}

absl::Status SafetensorsFile::ParseHeader() {
  const std::string& path = path_;
  const uint64_t size = map_size_;

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | map_[i];
  if (header_len > kMaxHeaderBytes)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header length ", header_len, " exceeds the 100 MB limit; not a safetensors file?"));
  if (8 + header_len > size)
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated: header claims ", header_len,
                                                   " bytes but the file has only ", size - 8, " after the length"));
  data_start_ = 8 + header_len;
  const uint64_t buffer_size = size - data_start_;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(map_ + 8, map_ + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number too large
    return absl::InvalidArgumentError(absl::StrCat(path, ": header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": header is not a JSON object"));

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": __metadata__ must be an object"));
      for (auto m2 = it->begin(); m2 != it->end(); ++m2) {
        if (!m2->is_string())
          return absl::InvalidArgumentError(absl::StrCat(path, ": __metadata__.", m2.key(), " must be a string"));
        metadata_[m2.key()] = m2->get<std::string>();
      }
      continue;
    }
    const auto& v = *it;
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "': ", why));
    };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      return bad("entry needs dtype, shape and data_offsets");
    if (!v["dtype"].is_string()) return bad("dtype must be a string");
    SafetensorsEntry e;
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* info = FindDtype(e.dtype);
    if (!info) return bad(absl::StrCat("unknown dtype '", e.dtype, "'"));
    if (!v["shape"].is_array()) return bad("shape must be an array");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) return bad("shape entries must be non-negative integers");
      e.shape.push_back(d.get<int64_t>());
      // A shape whose element count overflows would wrap to a small byte size and pass the
      // check below, then allocate the huge shape on Load.
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d.get<int64_t>()), &numel) || numel > (uint64_t{1} << 60))
        return bad("shape has too many elements");
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      return bad("data_offsets must be [begin, end]");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.end < e.begin) return bad("data_offsets end before begin");
    if (e.end > buffer_size)
      return bad(absl::StrCat("data_offsets [", e.begin, ", ", e.end, ") run past the data buffer (", buffer_size,
                              " bytes): file truncated?"));
    if (e.end - e.begin != numel * static_cast<uint64_t>(info->bytes))
      return bad(
          absl::StrCat("byte size ", e.end - e.begin, " does not match shape (", numel, " x ", info->bytes, " bytes)"));
    ranges.emplace_back(e.begin, e.end);
    entries_.emplace(name, std::move(e));
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t cursor = 0;
  for (const auto& r : ranges) {
    if (r.first != cursor)
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor data ",
                                                     r.first < cursor ? "overlaps" : "leaves a gap",
                                                     " at buffer offset ", std::min(r.first, cursor)));
    cursor = r.second;
  }
  if (cursor != buffer_size)
    return absl::InvalidArgumentError(absl::StrCat(path, ": tensors cover ", cursor, " bytes but the data buffer has ",
                                                   buffer_size, " (trailing garbage or wrong header)"));
  return absl::OkStatus();
}

SafetensorsFile::~SafetensorsFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

absl::StatusOr<at::Tensor> SafetensorsFile::Load(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  const DtypeInfo* info = FindDtype(it->second.dtype);
  if (!info->loadable)
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", name, "' has unsupported dtype ",
                                                   it->second.dtype, " (supported: F32, F16, BF16)"));
  at::Tensor t = at::empty(it->second.shape, at::TensorOptions().dtype(info->type));
  // An empty tensor has no storage (data_ptr() is null), and memcpy to null is undefined even for 0 bytes.
  if (it->second.end > it->second.begin)
    std::memcpy(t.data_ptr(), map_ + data_start_ + it->second.begin, it->second.end - it->second.begin);
  return t;
}

absl::Status WriteSafetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> cpu;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    auto dtype = SafetensorsDtypeName(tensor.scalar_type());
    if (!dtype.ok()) return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': ", dtype.status().message()));
    at::Tensor c = tensor.detach().to(at::kCPU).contiguous();
    uint64_t bytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", *dtype}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(c);
  }
  std::string json = header.dump();
  while ((json.size() % 8) != 0) json.push_back(' ');
  std::string out;
  out.reserve(8 + json.size() + offset);
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += json;
  for (const auto& c : cpu) out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  return WriteFileAtomic(path, out);
}

}  // namespace polytune::engine
