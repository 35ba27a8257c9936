// The Unicode properties the stages look up per character, tabulated once from ICU for the
// Basic Multilingual Plane (256 KiB), so text in Cyrillic, Arabic, Devanagari or CJK costs a
// table read per character instead of several ICU calls. Answers are ICU's own: code points
// beyond the BMP (emoji, rare CJK) still ask ICU. Internal to dataprep.
#pragma once

#include <unicode/uchar.h>
#include <unicode/uscript.h>

#include <cstdint>

namespace polytune::dataprep {

struct CharProps {
  bool white_space;   // u_isUWhiteSpace
  bool alpha;         // u_isalpha
  bool alnum;         // u_isalnum
  int8_t char_type;   // u_charType (UCharCategory)
  uint8_t script;     // uscript_getScript (UScriptCode; all fit in 8 bits, USCRIPT_CODE_LIMIT is 200)
  uint8_t unused[3];  // 8 bytes a character
};

CharProps LookUpCharProps(UChar32 c);  // ICU, for any code point

inline CharProps PropsOf(UChar32 c) {
  extern const CharProps* const kBmpCharProps;
  return c >= 0 && c < 0x10000 ? kBmpCharProps[c] : LookUpCharProps(c);
}

// Whitespace or punctuation (general category P*).
inline bool IsSpaceOrPunct(const CharProps& p) { return p.white_space || (U_MASK(p.char_type) & U_GC_P_MASK) != 0; }

}  // namespace polytune::dataprep
