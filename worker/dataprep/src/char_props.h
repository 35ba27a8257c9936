// The Unicode properties the stages look up per character, tabulated once from ICU for the
// Basic Multilingual Plane, so text in Cyrillic, Arabic, Devanagari or CJK costs a
// table read per character instead of several ICU calls. Answers are ICU's own: code points
// beyond the BMP (emoji, rare CJK) still ask ICU. Internal to dataprep.
#pragma once

#include <unicode/uchar.h>
#include <unicode/uscript.h>

#include <cstdint>

namespace polytune::dataprep {

struct CharProps {
  bool white_space;  // u_isUWhiteSpace
  bool alpha;        // u_isalpha
  bool alnum;        // u_isalnum
  int8_t char_type;  // u_charType (UCharCategory, 0-29)
  uint8_t script;    // uscript_getScript (UScriptCode; all fit in 8 bits, USCRIPT_CODE_LIMIT is 200)
};

CharProps LookUpCharProps(UChar32 c);  // ICU, for any code point

// The table holds each character's properties in 16 bits (128 KiB for the plane, which stays
// in a core's L2 cache where 8 bytes a character did not): bit 0 white_space, 1 alpha, 2 alnum,
// 3-7 char_type, 8-15 script.
inline uint16_t PackCharProps(const CharProps& p) {
  return static_cast<uint16_t>(p.white_space | (p.alpha << 1) | (p.alnum << 2) | ((p.char_type & 31) << 3) |
                               (p.script << 8));
}

inline CharProps PropsOf(UChar32 c) {
  extern const uint16_t* const kBmpCharProps;
  if (c < 0 || c >= 0x10000) return LookUpCharProps(c);
  const uint16_t v = kBmpCharProps[c];
  return CharProps{(v & 1) != 0, (v & 2) != 0, (v & 4) != 0, static_cast<int8_t>((v >> 3) & 31),
                   static_cast<uint8_t>(v >> 8)};
}

// Whitespace or punctuation (general category P*).
inline bool IsSpaceOrPunct(const CharProps& p) { return p.white_space || (U_MASK(p.char_type) & U_GC_P_MASK) != 0; }

}  // namespace polytune::dataprep
