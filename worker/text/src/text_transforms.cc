#include "text_transforms.h"

#include <unicode/normalizer2.h>
#include <unicode/regex.h>
#include <unicode/unistr.h>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "polytune/text/tokenizer.h"

namespace polytune::text {
namespace {

const std::string kMetaspace = "\xE2\x96\x81";  // U+2581

absl::Status Unsupported(const std::string& source, const std::string& what, const std::string& type) {
  return absl::UnimplementedError(absl::StrCat(source, ": ", what, " type '", type, "' is not supported"));
}

// ---- normalizers ----
class IcuNormalizer : public Normalizer {
 public:
  explicit IcuNormalizer(const icu::Normalizer2* n) : n_(n) {}
  std::string Apply(const std::string& text) const override {
    UErrorCode status = U_ZERO_ERROR;
    icu::UnicodeString out = n_->normalize(icu::UnicodeString::fromUTF8(text), status);
    if (U_FAILURE(status)) return text;
    std::string s;
    return out.toUTF8String(s);
  }

 private:
  const icu::Normalizer2* n_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : p_(std::move(p)) {}
  std::string Apply(const std::string& text) const override { return text.empty() ? text : p_ + text; }

 private:
  std::string p_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  std::string Apply(const std::string& text) const override { return absl::StrReplaceAll(text, {{from_, to_}}); }

 private:
  std::string from_, to_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string Apply(const std::string& text) const override {
    std::string s = text;
    for (const auto& p : parts_) s = p->Apply(s);
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// ---- regex splitting ----

// Hugging Face uses Oniguruma, whose \s is Unicode White_Space; ICU's \s omits U+000B and
// U+0085. Rewrite \s / \S to the property so both engines agree.
std::string ToIcuPattern(const std::string& pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      const char c = pattern[i + 1];
      if (c == 's')
        out += "\\p{White_Space}";
      else if (c == 'S')
        out += "\\P{White_Space}";
      else
        out += pattern.substr(i, 2);
      ++i;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };

class RegexSplitter {
 public:
  static absl::StatusOr<std::unique_ptr<RegexSplitter>> Compile(const std::string& regex, const std::string& source) {
    UErrorCode status = U_ZERO_ERROR;
    UParseError perr;
    std::unique_ptr<icu::RegexPattern> p(
        icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(ToIcuPattern(regex)), 0, perr, status));
    if (U_FAILURE(status))
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": cannot compile split regex '", regex, "': ", u_errorName(status)));
    auto s = std::make_unique<RegexSplitter>();
    s->pattern_ = std::move(p);
    return s;
  }

  // Appends the pieces of `text` split at every match, per `behavior`.
  void Split(const std::string& text, SplitBehavior behavior, std::vector<std::string>* out) const {
    icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::RegexMatcher> m(pattern_->matcher(u, status));
    auto piece = [&](int32_t a, int32_t b) {
      std::string s;
      u.tempSubString(a, b - a).toUTF8String(s);
      return s;
    };
    std::vector<std::pair<int32_t, int32_t>> matches;
    while (m->find(status) && U_SUCCESS(status)) {
      const int32_t a = m->start(status), b = m->end(status);
      if (b > a) matches.emplace_back(a, b);
    }
    int32_t cursor = 0;
    const size_t first = out->size();  // pieces before this text are not ours to merge into
    std::string pending;               // kMergedWithNext: matches waiting for the next piece
    for (const auto& [a, b] : matches) {
      if (a > cursor) {
        out->push_back(pending + piece(cursor, a));
        pending.clear();
      }
      std::string match = piece(a, b);
      switch (behavior) {
        case SplitBehavior::kIsolated:
          out->push_back(match);
          break;
        case SplitBehavior::kRemoved:
          break;
        case SplitBehavior::kMergedWithPrevious:
          if (out->size() > first)
            out->back() += match;
          else
            out->push_back(match);
          break;
        case SplitBehavior::kMergedWithNext:
          pending += match;
          break;
      }
      cursor = b;
    }
    if (cursor < u.length())
      out->push_back(pending + piece(cursor, u.length()));
    else if (!pending.empty())
      out->push_back(pending);
  }

 private:
  std::unique_ptr<icu::RegexPattern> pattern_;
};

const char* kGpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<RegexSplitter> re, SplitBehavior b) : re_(std::move(re)), behavior_(b) {}
  std::vector<std::string> Split(const std::vector<std::string>& pieces, bool) const override {
    std::vector<std::string> out;
    for (const auto& p : pieces) re_->Split(p, behavior_, &out);
    return out;
  }

 private:
  std::unique_ptr<RegexSplitter> re_;
  SplitBehavior behavior_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<RegexSplitter> re)
      : add_prefix_space_(add_prefix_space), re_(std::move(re)) {}
  std::vector<std::string> Split(const std::vector<std::string>& pieces, bool first_segment) const override {
    std::vector<std::string> split;
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string p = pieces[i];
      if (add_prefix_space_ && i == 0 && first_segment && !p.empty() && p[0] != ' ') p = " " + p;
      if (re_)
        re_->Split(p, SplitBehavior::kIsolated, &split);
      else
        split.push_back(p);
    }
    const auto& alphabet = ByteLevelAlphabet();
    std::vector<std::string> out;
    for (const auto& s : split) {
      std::string mapped;
      for (unsigned char c : s) mapped += alphabet[c];
      out.push_back(std::move(mapped));
    }
    return out;
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<RegexSplitter> re_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, std::string scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(std::move(scheme)), split_(split) {}
  std::vector<std::string> Split(const std::vector<std::string>& pieces, bool first_segment) const override {
    std::vector<std::string> out;
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string p = absl::StrReplaceAll(pieces[i], {{" ", replacement_}});
      const bool prepend = scheme_ == "always" || (scheme_ == "first" && first_segment && i == 0);
      if (prepend && p.rfind(replacement_, 0) != 0) p = replacement_ + p;
      if (!split_) {
        out.push_back(p);
        continue;
      }
      // Split before each replacement character, keeping it with the following text.
      size_t start = 0;
      for (size_t pos = p.find(replacement_, 1); pos != std::string::npos; pos = p.find(replacement_, pos + 1)) {
        out.push_back(p.substr(start, pos - start));
        start = pos;
      }
      if (start < p.size()) out.push_back(p.substr(start));
    }
    return out;
  }

 private:
  std::string replacement_, scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  std::vector<std::string> Split(const std::vector<std::string>& pieces, bool first_segment) const override {
    std::vector<std::string> cur = pieces;
    for (const auto& p : parts_) cur = p->Split(cur, first_segment);
    return cur;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

// ---- decoders ----
class ByteLevelDecoder : public Decoder {
 public:
  std::vector<std::string> Chain(std::vector<std::string> tokens) const override {
    static const std::unordered_map<std::string, unsigned char> inverse = [] {
      std::unordered_map<std::string, unsigned char> m;
      const auto& a = ByteLevelAlphabet();
      for (int b = 0; b < 256; ++b) m[a[b]] = static_cast<unsigned char>(b);
      return m;
    }();
    std::string joined, bytes;
    for (const auto& t : tokens) joined += t;
    for (size_t i = 0; i < joined.size();) {
      const unsigned char lead = static_cast<unsigned char>(joined[i]);
      const size_t len = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xe ? 3 : 4;
      auto it = inverse.find(joined.substr(i, len));
      if (it != inverse.end())
        bytes.push_back(static_cast<char>(it->second));
      else
        bytes += joined.substr(i, len);
      i += len;
    }
    return {bytes};
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  std::vector<std::string> Chain(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) t = absl::StrReplaceAll(t, {{from_, to_}});
    return tokens;
  }

 private:
  std::string from_, to_;
};

// Runs of <0xNN> tokens become their bytes (invalid UTF-8 becomes U+FFFD per byte).
class ByteFallbackDecoder : public Decoder {
 public:
  std::vector<std::string> Chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    int nbytes = 0;
    auto flush = [&] {
      if (nbytes == 0) return;
      icu::UnicodeString u = icu::UnicodeString::fromUTF8(bytes);
      std::string valid;
      u.toUTF8String(valid);
      if (valid == bytes)
        out.push_back(bytes);
      else
        for (int i = 0; i < nbytes; ++i) out.push_back("\xEF\xBF\xBD");
      bytes.clear();
      nbytes = 0;
    };
    for (const auto& t : tokens) {
      if (t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4]))) {
        bytes.push_back(static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
        ++nbytes;
      } else {
        flush();
        out.push_back(t);
      }
    }
    flush();
    return out;
  }
};

class FuseDecoder : public Decoder {
 public:
  std::vector<std::string> Chain(std::vector<std::string> tokens) const override {
    std::string s;
    for (const auto& t : tokens) s += t;
    return {s};
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, int start, int stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  std::vector<std::string> Chain(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) {
      for (int i = 0; i < start_ && t.rfind(content_, 0) == 0; ++i) t = t.substr(content_.size());
      for (int i = 0; i < stop_ && t.size() >= content_.size() &&
                      t.compare(t.size() - content_.size(), content_.size(), content_) == 0;
           ++i)
        t.resize(t.size() - content_.size());
    }
    return tokens;
  }

 private:
  std::string content_;
  int start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  std::vector<std::string> Chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = absl::StrReplaceAll(tokens[i], {{replacement_, " "}});
      if (i == 0 && strip_first_ && !tokens[i].empty() && tokens[i][0] == ' ') tokens[i] = tokens[i].substr(1);
    }
    return tokens;
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  std::vector<std::string> Chain(std::vector<std::string> tokens) const override {
    for (const auto& p : parts_) tokens = p->Chain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// The components of a Sequence (null entries skipped), built by `make`.
template <typename T, typename Make>
absl::StatusOr<std::vector<std::unique_ptr<T>>> MakeParts(const nlohmann::json& list, const std::string& source,
                                                          Make make) {
  std::vector<std::unique_ptr<T>> parts;
  for (const auto& item : list) {
    absl::StatusOr<std::unique_ptr<T>> part = make(item, source);
    if (!part.ok()) return part.status();
    if (*part) parts.push_back(std::move(*part));
  }
  return parts;
}

absl::StatusOr<std::string> StringPattern(const nlohmann::json& j, const std::string& source, const std::string& what) {
  if (j.contains("pattern") && j.at("pattern").contains("String"))
    return j.at("pattern").at("String").get<std::string>();
  return absl::UnimplementedError(absl::StrCat(source, ": ", what, " Replace with a Regex pattern is not supported"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const nlohmann::json& j, const std::string& source) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  const std::string type = j.value("type", "");
  UErrorCode status = U_ZERO_ERROR;
  if (type == "NFC") return std::unique_ptr<Normalizer>(new IcuNormalizer(icu::Normalizer2::getNFCInstance(status)));
  if (type == "NFD") return std::unique_ptr<Normalizer>(new IcuNormalizer(icu::Normalizer2::getNFDInstance(status)));
  if (type == "NFKC") return std::unique_ptr<Normalizer>(new IcuNormalizer(icu::Normalizer2::getNFKCInstance(status)));
  if (type == "NFKD") return std::unique_ptr<Normalizer>(new IcuNormalizer(icu::Normalizer2::getNFKDInstance(status)));
  if (type == "Prepend") return std::unique_ptr<Normalizer>(new PrependNormalizer(j.value("prepend", "")));
  if (type == "Replace") {
    auto from = StringPattern(j, source, "normalizer");
    if (!from.ok()) return from.status();
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer(*from, j.value("content", "")));
  }
  if (type == "Sequence") {
    auto parts = MakeParts<Normalizer>(j.value("normalizers", nlohmann::json::array()), source, MakeNormalizer);
    if (!parts.ok()) return parts.status();
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(*parts)));
  }
  return Unsupported(source, "normalizer", type);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const nlohmann::json& j, const std::string& source) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  const std::string type = j.value("type", "");
  if (type == "Split") {
    if (j.value("invert", false)) return Unsupported(source, "pre_tokenizer", "Split with invert");
    const std::string b = j.value("behavior", "Isolated");
    SplitBehavior behavior;
    if (b == "Isolated")
      behavior = SplitBehavior::kIsolated;
    else if (b == "Removed")
      behavior = SplitBehavior::kRemoved;
    else if (b == "MergedWithPrevious")
      behavior = SplitBehavior::kMergedWithPrevious;
    else if (b == "MergedWithNext")
      behavior = SplitBehavior::kMergedWithNext;
    else
      return Unsupported(source, "pre_tokenizer Split behavior", b);
    std::string regex;
    const nlohmann::json pattern = j.value("pattern", nlohmann::json::object());
    if (pattern.contains("Regex")) {
      regex = j.at("pattern").at("Regex").get<std::string>();
    } else if (pattern.contains("String")) {
      // Escape the literal for the regex engine.
      for (char c : j.at("pattern").at("String").get<std::string>()) {
        if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) regex += '\\';
        regex += c;
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": Split pre_tokenizer needs pattern.Regex or pattern.String"));
    }
    auto re = RegexSplitter::Compile(regex, source);
    if (!re.ok()) return re.status();
    return std::unique_ptr<PreTokenizer>(new SplitPreTokenizer(std::move(*re), behavior));
  }
  if (type == "ByteLevel") {
    std::unique_ptr<RegexSplitter> re;
    if (j.value("use_regex", true)) {
      auto compiled = RegexSplitter::Compile(kGpt2Pattern, source);
      if (!compiled.ok()) return compiled.status();
      re = std::move(*compiled);
    }
    return std::unique_ptr<PreTokenizer>(new ByteLevelPreTokenizer(j.value("add_prefix_space", false), std::move(re)));
  }
  if (type == "Metaspace") {
    std::string scheme = j.value("prepend_scheme", "");
    if (scheme.empty()) scheme = j.value("add_prefix_space", true) ? "always" : "never";
    return std::unique_ptr<PreTokenizer>(
        new MetaspacePreTokenizer(j.value("replacement", kMetaspace), scheme, j.value("split", true)));
  }
  if (type == "Sequence") {
    auto parts = MakeParts<PreTokenizer>(j.value("pretokenizers", nlohmann::json::array()), source, MakePreTokenizer);
    if (!parts.ok()) return parts.status();
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(*parts)));
  }
  return Unsupported(source, "pre_tokenizer", type);
}

absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& j, const std::string& source) {
  if (j.is_null()) return std::unique_ptr<Decoder>();
  const std::string type = j.value("type", "");
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Strip")
    return std::unique_ptr<Decoder>(new StripDecoder(j.value("content", " "), j.value("start", 0), j.value("stop", 0)));
  if (type == "Replace") {
    auto from = StringPattern(j, source, "decoder");
    if (!from.ok()) return from.status();
    return std::unique_ptr<Decoder>(new ReplaceDecoder(*from, j.value("content", "")));
  }
  if (type == "Metaspace") {
    std::string scheme = j.value("prepend_scheme", "");
    const bool strip = scheme.empty() ? j.value("add_prefix_space", true) : scheme != "never";
    return std::unique_ptr<Decoder>(new MetaspaceDecoder(j.value("replacement", kMetaspace), strip));
  }
  if (type == "Sequence") {
    auto parts = MakeParts<Decoder>(j.value("decoders", nlohmann::json::array()), source, MakeDecoder);
    if (!parts.ok()) return parts.status();
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(*parts)));
  }
  return Unsupported(source, "decoder", type);
}

}  // namespace polytune::text
