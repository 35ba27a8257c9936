// Fast, stable 64-bit hashing of byte strings, shared by the dedup and quality stages.
// Stable across runs and builds of one byte order, which is all it is used within (the
// hashes are never stored); absl::Hash is seeded per process, and Debian's build hashes a
// string_view through std::hash, byte by byte.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace polytune::dataprep {

inline uint64_t Mix64(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

// Eight bytes at a time through Mix64 (the tail zero-padded, the length mixed in): about 4
// times faster than FNV-1a byte by byte.
inline uint64_t HashBytes(std::string_view s, uint64_t seed) {
  uint64_t h = seed ^ (static_cast<uint64_t>(s.size()) * 0x9E3779B97F4A7C15ULL);
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = Mix64(h ^ w);
  }
  if (i < s.size()) {
    uint64_t w = 0;
    std::memcpy(&w, s.data() + i, s.size() - i);
    h = Mix64(h ^ w ^ 0xA5A5A5A5A5A5A5A5ULL);
  }
  return Mix64(h);
}

}  // namespace polytune::dataprep
