#include "char_props.h"

namespace polytune::dataprep {

static_assert(USCRIPT_CODE_LIMIT <= 256, "script codes no longer fit CharProps::script");

CharProps LookUpCharProps(UChar32 c) {
  UErrorCode status = U_ZERO_ERROR;
  const UScriptCode script = uscript_getScript(c, &status);
  CharProps p{};
  p.white_space = u_isUWhiteSpace(c);
  p.alpha = u_isalpha(c);
  p.alnum = u_isalnum(c);
  p.char_type = static_cast<int8_t>(u_charType(c));
  p.script = static_cast<uint8_t>(U_SUCCESS(status) ? script : USCRIPT_INVALID_CODE);
  return p;
}

// Built when the library loads (a few milliseconds), so lookups need no guard; never freed
// (threads may still read it while the process exits).
const uint16_t* const kBmpCharProps = [] {
  static_assert(U_CHAR_CATEGORY_COUNT <= 32, "general categories no longer fit 5 bits");
  auto* table = new uint16_t[0x10000];
  for (UChar32 c = 0; c < 0x10000; ++c) table[c] = PackCharProps(LookUpCharProps(c));
  return table;
}();

}  // namespace polytune::dataprep
