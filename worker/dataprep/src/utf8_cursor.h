// Decoding UTF-8 one code point at a time, with an ASCII fast path. Internal to dataprep.
#pragma once

#include <unicode/utf8.h>

#include <cstdint>
#include <string_view>

namespace polytune::dataprep {

// The code point at s[i], advancing i past it; negative for an ill-formed sequence (i then
// skips the longest ill-formed prefix, as ICU's U8_NEXT does).
inline UChar32 NextCodePoint(const uint8_t* s, int32_t& i, int32_t n) {
  if (s[i] < 0x80) return s[i++];
  UChar32 c;
  U8_NEXT(s, i, n, c);
  return c;
}

inline const uint8_t* Bytes(std::string_view text) { return reinterpret_cast<const uint8_t*>(text.data()); }

}  // namespace polytune::dataprep
