#include "polytune/dataprep/standardize.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <cstring>
#include <vector>

namespace polytune::dataprep {
namespace {

bool AllAscii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

void AppendUtf8(UChar32 c, std::string* out) {
  char buf[4];
  int32_t len = 0;
  UBool error = false;
  U8_APPEND(reinterpret_cast<uint8_t*>(buf), len, 4, c, error);
  out->append(buf, len);
}

bool IsExoticSpace(UChar32 c) {
  // Zs other than ' ' and the ideographic space (which CJK text uses on purpose).
  return c == 0x00A0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F;
}

bool IsRemovableControl(UChar32 c) {
  if (c == '\t' || c == '\n') return false;
  return c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F) || c == 0xFEFF || c == 0x200B;
}

// Normalisation form, control characters and digits for one piece of prose (no code).
void StandardizeProse(std::string_view piece, const spec::StandardizeConfig& c, std::string* out) {
  std::string normalized;
  if (c.unicode != spec::UnicodeForm::kNone && !AllAscii(piece)) {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* norm = c.unicode == spec::UnicodeForm::kNfc ? icu::Normalizer2::getNFCInstance(status)
                                                                        : icu::Normalizer2::getNFKCInstance(status);
    if (U_SUCCESS(status) && !norm->isNormalizedUTF8(icu::StringPiece(piece.data(), piece.size()), status)) {
      status = U_ZERO_ERROR;
      icu::StringByteSink<std::string> sink(&normalized);
      norm->normalizeUTF8(0, icu::StringPiece(piece.data(), piece.size()), sink, nullptr, status);
      if (U_SUCCESS(status)) piece = normalized;
    }
  }
  if (AllAscii(piece) && !c.remove_control_chars && !c.whitespace) {
    out->append(piece);
    return;
  }
  const auto* s = reinterpret_cast<const uint8_t*>(piece.data());
  const int32_t n = static_cast<int32_t>(piece.size());
  for (int32_t i = 0; i < n;) {
    if (s[i] < 0x80) {  // ASCII fast path: printable runs copied whole
      int32_t j = i;
      while (j < n && s[j] >= 0x20 && s[j] < 0x7F) ++j;
      if (j > i) {
        out->append(piece.data() + i, j - i);
        i = j;
        continue;
      }
      const char ch = static_cast<char>(s[i++]);
      if (ch == '\r' && c.whitespace) {
        out->push_back(' ');
      } else if (!(c.remove_control_chars && IsRemovableControl(static_cast<unsigned char>(ch)))) {
        out->push_back(ch);
      }
      continue;
    }
    UChar32 cp;
    const int32_t start = i;
    U8_NEXT(s, i, n, cp);
    if (cp < 0) {  // cannot happen after RepairUtf8; keep the bytes rather than lose text
      out->append(piece.substr(start, i - start));
      continue;
    }
    if (c.remove_control_chars && IsRemovableControl(cp)) continue;
    if (c.whitespace && IsExoticSpace(cp)) {
      out->push_back(' ');
      continue;
    }
    if (c.ascii_digits && u_charType(cp) == U_DECIMAL_DIGIT_NUMBER) {
      out->push_back(static_cast<char>('0' + u_charDigitValue(cp)));
      continue;
    }
    out->append(piece.substr(start, i - start));
  }
}

// One line outside fenced code, appended to `out`: prose standardised, `inline code` kept as
// is. Whitespace is tidied in place over what was appended (it only ever removes characters).
void AppendStandardizedLine(std::string_view line, const spec::StandardizeConfig& c, std::string* out) {
  const size_t start = out->size();
  size_t pos = 0;
  while (pos < line.size()) {
    const size_t open = line.find('`', pos);
    const size_t close = open == std::string_view::npos ? open : line.find('`', open + 1);
    if (close == std::string_view::npos) {
      StandardizeProse(line.substr(pos), c, out);
      break;
    }
    StandardizeProse(line.substr(pos, open - pos), c, out);
    out->append(line.substr(open, close + 1 - open));
    pos = close + 1;
  }
  if (!c.whitespace) return;
  // Runs of spaces after the indentation become one; trailing spaces and tabs go.
  char* t = out->data() + start;
  const size_t n = out->size() - start;
  size_t w = 0, i = 0;
  while (i < n && (t[i] == ' ' || t[i] == '\t')) t[w++] = t[i++];
  bool in_code = false;
  for (; i < n; ++i) {
    const char ch = t[i];
    if (ch == '`') in_code = !in_code;
    if (ch == ' ' && !in_code && w > 0 && t[w - 1] == ' ') continue;
    t[w++] = ch;
  }
  while (w > 0 && (t[w - 1] == ' ' || t[w - 1] == '\t' || t[w - 1] == '\r')) --w;
  out->resize(start + w);
}

bool IsFence(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  return line.substr(i, 3) == "```" || line.substr(i, 3) == "~~~";
}

}  // namespace

size_t RepairUtf8(std::string_view in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  size_t replaced = 0;
  const auto* s = reinterpret_cast<const uint8_t*>(in.data());
  const int32_t n = static_cast<int32_t>(in.size());
  for (int32_t i = 0; i < n;) {
    if (s[i] < 0x80) {
      out->push_back(static_cast<char>(s[i++]));
      continue;
    }
    const int32_t start = i;
    UChar32 cp;
    U8_NEXT(s, i, n, cp);
    if (cp < 0) {
      // U8_NEXT consumed the longest ill-formed prefix; each of its bytes is one error.
      replaced += i - start;
      for (int32_t k = start; k < i; ++k) AppendUtf8(0xFFFD, out);
    } else {
      out->append(in.substr(start, i - start));
    }
  }
  return replaced;
}

bool IsValidUtf8(std::string_view in) {
  const auto* s = reinterpret_cast<const uint8_t*>(in.data());
  const int32_t n = static_cast<int32_t>(in.size());
  for (int32_t i = 0; i < n;) {
    if (s[i] < 0x80) {
      uint64_t w;  // eight ASCII bytes at a time
      while (i + 8 <= n && (std::memcpy(&w, s + i, 8), (w & 0x8080808080808080ULL) == 0)) i += 8;
      while (i < n && s[i] < 0x80) ++i;
      continue;
    }
    UChar32 cp;
    U8_NEXT(s, i, n, cp);
    if (cp < 0) return false;
  }
  return true;
}

std::string Standardize(std::string_view text, const spec::StandardizeConfig& c) {
  if (!c.enabled) return std::string(text);
  std::string out;
  out.reserve(text.size());
  bool in_fence = false;
  int blank_run = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = text.substr(pos, nl - pos);
    const bool fence = IsFence(line);
    const size_t start = out.size();
    bool empty = false;
    if (in_fence || fence) {
      out.append(line);  // code: byte for byte
      blank_run = 0;
    } else {
      AppendStandardizedLine(line, c, &out);
      empty = out.size() == start;
      blank_run = empty ? blank_run + 1 : 0;
    }
    if (fence) in_fence = !in_fence;
    // An empty line adds nothing, so only its newline is left out when it is skipped.
    const bool skip = c.whitespace && !in_fence && !fence && empty && (blank_run > 1 || start == 0);
    if (!skip && nl < text.size()) out.push_back('\n');
    pos = nl + 1;
  }
  if (c.whitespace) {
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ' || out.back() == '\t')) out.pop_back();
  }
  return out;
}

}  // namespace polytune::dataprep
