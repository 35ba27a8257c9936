// Reader and writer for the safetensors format (https://huggingface.co/docs/safetensors).
//
// Layout: u64 little-endian header length N, N bytes of JSON header, then the data buffer.
// The reader memory-maps the file and validates the header completely before any tensor is
// touched: dtype names, shapes, offsets inside the buffer, byte sizes matching shapes, and
// tensors covering the buffer exactly without overlap.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"

namespace polytune::engine {

struct SafetensorsEntry {
  std::string dtype;  // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets relative to the data buffer
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // The same validation over bytes in memory (an archive member; the fuzz target). `name`
  // stands for the path in errors.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string bytes, const std::string& name);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool Contains(const std::string& name) const { return entries_.count(name) > 0; }

  // Copies a tensor out of the mapping into a new CPU tensor of its stored dtype.
  // Only F32, F16, BF16, F64, I64, I32, U8 and I8 are materialised.
  absl::StatusOr<at::Tensor> Load(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  // Validates the header and tensor table of map_[0, map_size_).
  absl::Status ParseHeader();
  std::string path_;
  std::string owned_;    // FromBytes: the bytes map_ points into
  bool mapped_ = false;  // Open: map_ is an mmap to unmap
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  size_t data_start_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device, contiguous or not) to `path` atomically (temp file, fsync,
// rename). Supported dtypes: float, half, bfloat16, double, int64, int32, uint8, int8.
absl::Status WriteSafetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype name of a torch dtype, or an error.
absl::StatusOr<std::string> SafetensorsDtypeName(at::ScalarType type);

}  // namespace polytune::engine
