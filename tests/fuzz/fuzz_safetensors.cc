// Fuzz target: the safetensors header and tensor table (model and adapter files are
// untrusted input). A file that opens must load every tensor it lists.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "polytune/engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using polytune::engine::SafetensorsFile;
  auto file = SafetensorsFile::FromBytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz.safetensors");
  if (!file.ok()) return 0;
  for (const auto& [name, entry] : (*file)->entries()) {
    auto t = (*file)->Load(name);
    // Loading fails only for dtypes we do not materialise; never for a table that validated.
    if (t.ok() && static_cast<uint64_t>(t->nbytes()) != entry.end - entry.begin) std::abort();
  }
  return 0;
}
