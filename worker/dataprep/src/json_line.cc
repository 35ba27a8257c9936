#include "json_line.h"

#include <array>
#include <cstdint>
#include <cstring>

#include "polytune/dataprep/standardize.h"

namespace polytune::dataprep {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxDepth = 256;

// JSON's two-character escapes, both ways: the letter after the backslash for each byte that
// has one ('"', '\\', and the five C0 controls nlohmann writes this way), and the byte for each
// letter. '/' is read as itself but never written escaped.
constexpr char kEscapes[][2] = {{'"', '"'},  {'\\', '\\'}, {'\b', 'b'}, {'\f', 'f'},
                                {'\n', 'n'}, {'\r', 'r'},  {'\t', 't'}};
constexpr std::array<char, 256> kEscapeLetter = [] {  // byte -> letter, 0 for none
  std::array<char, 256> t{};
  for (const auto& e : kEscapes) t[static_cast<unsigned char>(e[0])] = e[1];
  return t;
}();
constexpr std::array<char, 256> kUnescaped = [] {  // letter -> byte, 0 for none
  std::array<char, 256> t{};
  for (const auto& e : kEscapes) t[static_cast<unsigned char>(e[1])] = e[0];
  t['/'] = '/';
  return t;
}();

// A recursive-descent reader over one line. Every method returns false to decline.
class Reader {
 public:
  explicit Reader(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  bool Document(Json* out) {
    SkipSpace();
    if (!Value(out, 0)) return false;
    SkipSpace();
    return p_ == end_;  // nlohmann refuses anything after the value
  }

 private:
  void SkipSpace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }

  bool Literal(std::string_view word) {
    if (static_cast<size_t>(end_ - p_) < word.size() || std::memcmp(p_, word.data(), word.size()) != 0) return false;
    p_ += word.size();
    return true;
  }

  bool Value(Json* out, int depth) {
    if (p_ == end_) return false;
    switch (*p_) {
      case '{':
        return Object(out, depth + 1);
      case '[':
        return Array(out, depth + 1);
      case '"': {
        std::string s;
        if (!String(&s)) return false;
        *out = std::move(s);
        return true;
      }
      case 't':
        *out = true;
        return Literal("true");
      case 'f':
        *out = false;
        return Literal("false");
      case 'n':
        *out = nullptr;
        return Literal("null");
      default:
        return Number(out);
    }
  }

  bool Object(Json* out, int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;  // '{'
    *out = Json::object();
    auto& object = out->get_ref<Json::object_t&>();
    // Room for a chat message's keys at once: ordered_map is a vector whose keys are const, so
    // each regrowth copies them.
    object.reserve(4);
    SkipSpace();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    for (;;) {
      SkipSpace();
      if (p_ == end_ || *p_ != '"') return false;
      std::string key;
      if (!String(&key)) return false;
      SkipSpace();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      SkipSpace();
      // A repeated key: nlohmann keeps the first position and the last value; left to it.
      auto [it, inserted] = object.emplace(std::move(key), nullptr);
      if (!inserted || !Value(&it->second, depth)) return false;
      SkipSpace();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ != '}') return false;
      ++p_;
      return true;
    }
  }

  bool Array(Json* out, int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;  // '['
    *out = Json::array();
    auto& array = out->get_ref<Json::array_t&>();
    SkipSpace();
    if (p_ < end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    for (;;) {
      SkipSpace();
      array.emplace_back();
      if (!Value(&array.back(), depth)) return false;
      SkipSpace();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ != ']') return false;
      ++p_;
      return true;
    }
  }

  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  bool Hex4(uint32_t* v) {
    if (end_ - p_ < 4) return false;
    *v = 0;
    for (int k = 0; k < 4; ++k) {
      const int d = HexDigit(p_[k]);
      if (d < 0) return false;
      *v = *v * 16 + static_cast<uint32_t>(d);
    }
    p_ += 4;
    return true;
  }

  static void AppendUtf8(uint32_t cp, std::string* s) {
    if (cp < 0x80) {
      s->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      s->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      s->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      s->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // At the opening quote. Plain runs are copied whole; raw control characters are refused, as
  // by nlohmann (the input is valid UTF-8, so other bytes pass as they are).
  bool String(std::string* s) {
    ++p_;
    for (;;) {
      const char* run = p_;
      while (p_ < end_ && *p_ != '"' && *p_ != '\\' && static_cast<unsigned char>(*p_) >= 0x20) ++p_;
      s->append(run, static_cast<size_t>(p_ - run));
      if (p_ == end_ || static_cast<unsigned char>(*p_) < 0x20) return false;
      if (*p_ == '"') {
        ++p_;
        return true;
      }
      if (++p_ == end_) return false;  // after the backslash
      const char e = *p_++;
      if (const char byte = kUnescaped[static_cast<unsigned char>(e)]; byte != 0) {
        s->push_back(byte);
        continue;
      }
      if (e != 'u') return false;
      uint32_t cp;
      if (!Hex4(&cp)) return false;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // a low surrogate first
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t low;
        if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
        p_ += 2;
        if (!Hex4(&low) || low < 0xDC00 || low > 0xDFFF) return false;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
      }
      AppendUtf8(cp, s);
    }
  }

  // Integers of up to 18 digits (they fit both int64 and uint64); nlohmann stores a
  // non-negative one as unsigned and a negative one as signed. Anything else that looks like a
  // number (fraction, exponent, more digits) is parsed by nlohmann as a token of its own.
  bool Number(Json* out) {
    const char* start = p_;
    const bool negative = p_ < end_ && *p_ == '-';
    if (negative) ++p_;
    const char* digits = p_;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    const size_t n = static_cast<size_t>(p_ - digits);
    if (n == 0 || (n > 1 && *digits == '0')) return false;
    const bool more = p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E');
    if (!more && n <= 18) {
      uint64_t v = 0;
      for (const char* d = digits; d < p_; ++d) v = v * 10 + static_cast<uint64_t>(*d - '0');
      if (negative) {
        *out = -static_cast<int64_t>(v);
      } else {
        *out = v;
      }
      return true;
    }
    while (p_ < end_ &&
           ((*p_ >= '0' && *p_ <= '9') || *p_ == '.' || *p_ == 'e' || *p_ == 'E' || *p_ == '+' || *p_ == '-'))
      ++p_;
    *out = Json::parse(start, p_, nullptr, /*allow_exceptions=*/false);
    return !out->is_discarded();
  }

  const char* p_;
  const char* end_;
};

// Bytes nlohmann's dump escapes (with ensure_ascii off): the quote, the backslash and the C0
// controls; DEL and everything above pass as they are.
constexpr std::array<bool, 256> kNeedsEscape = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = true;
  t['"'] = t['\\'] = true;
  return t;
}();

void AppendString(const std::string& s, std::string* out) {
  const size_t mark = out->size();
  out->push_back('"');
  const char* p = s.data();
  const char* const end = p + s.size();
  bool non_ascii = false;
  while (p < end) {
    const char* run = p;
    while (p < end && !kNeedsEscape[static_cast<unsigned char>(*p)]) non_ascii |= (*p++ & 0x80) != 0;
    out->append(run, static_cast<size_t>(p - run));
    if (p == end) break;
    const unsigned char c = static_cast<unsigned char>(*p++);
    if (const char letter = kEscapeLetter[c]; letter != 0) {
      const char e[] = {'\\', letter};
      out->append(e, 2);
      continue;
    }
    static constexpr char kHex[] = "0123456789abcdef";  // other C0 controls: \u00xx, lower case
    const char u[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
    out->append(u, sizeof(u));
  }
  out->push_back('"');
  // Invalid UTF-8 is nlohmann's to replace, byte for byte as it does it.
  if (non_ascii && !IsValidUtf8(s)) {
    out->resize(mark);
    out->append(Json(s).dump(-1, ' ', false, Json::error_handler_t::replace));
  }
}

}  // namespace

bool ParseJsonLine(std::string_view text, Json* out) {
  if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF) return false;  // a BOM: nlohmann's rules
  Json value;
  if (!Reader(text).Document(&value)) return false;
  *out = std::move(value);  // a declined line leaves *out as it was
  return true;
}

void AppendJson(const Json& value, std::string* out) {
  switch (value.type()) {
    case Json::value_t::object: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, v] : value.get_ref<const Json::object_t&>()) {
        if (!first) out->push_back(',');
        first = false;
        AppendString(key, out);
        out->push_back(':');
        AppendJson(v, out);
      }
      out->push_back('}');
      return;
    }
    case Json::value_t::array: {
      out->push_back('[');
      bool first = true;
      for (const auto& v : value.get_ref<const Json::array_t&>()) {
        if (!first) out->push_back(',');
        first = false;
        AppendJson(v, out);
      }
      out->push_back(']');
      return;
    }
    case Json::value_t::string:
      AppendString(value.get_ref<const std::string&>(), out);
      return;
    case Json::value_t::boolean:
      out->append(value.get<bool>() ? "true" : "false");
      return;
    case Json::value_t::null:
      out->append("null");
      return;
    case Json::value_t::number_integer:
      out->append(std::to_string(value.get<int64_t>()));
      return;
    case Json::value_t::number_unsigned:
      out->append(std::to_string(value.get<uint64_t>()));
      return;
    default:  // floats (nlohmann's shortest round-trip form), binary, discarded
      out->append(value.dump(-1, ' ', false, Json::error_handler_t::replace));
  }
}

}  // namespace polytune::dataprep
