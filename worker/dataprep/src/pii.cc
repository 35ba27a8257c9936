#include "polytune/dataprep/pii.h"

#include <phonenumbers/phonenumbermatch.h>
#include <phonenumbers/phonenumbermatcher.h>
#include <phonenumbers/phonenumberutil.h>
#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <climits>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "polytune/common/check.h"
#include "polytune/dataprep/pii_checks.h"

namespace polytune::dataprep {
namespace {

using i18n::phonenumbers::PhoneNumberMatch;
using i18n::phonenumbers::PhoneNumberMatcher;
using i18n::phonenumbers::PhoneNumberUtil;

// Where people writing each language most often live; the config's `regions` add to these.
const std::map<std::string, std::vector<std::string>>& LanguageRegions() {
  static const auto* regions =
      new std::map<std::string, std::vector<std::string>>{{"ar", {"SA", "EG", "AE", "MA"}},
                                                          {"bg", {"BG"}},
                                                          {"bn", {"BD", "IN"}},
                                                          {"ca", {"ES"}},
                                                          {"cs", {"CZ"}},
                                                          {"da", {"DK"}},
                                                          {"de", {"DE", "AT", "CH"}},
                                                          {"el", {"GR", "CY"}},
                                                          {"en", {"US", "GB", "IN", "AU", "CA"}},
                                                          {"es", {"ES", "MX", "AR", "CO", "CL", "PE", "US"}},
                                                          {"et", {"EE"}},
                                                          {"fa", {"IR"}},
                                                          {"fi", {"FI"}},
                                                          {"fr", {"FR", "BE", "CH", "CA"}},
                                                          {"he", {"IL"}},
                                                          {"hi", {"IN"}},
                                                          {"hr", {"HR"}},
                                                          {"hu", {"HU"}},
                                                          {"id", {"ID"}},
                                                          {"it", {"IT", "CH"}},
                                                          {"ja", {"JP"}},
                                                          {"ko", {"KR"}},
                                                          {"lt", {"LT"}},
                                                          {"lv", {"LV"}},
                                                          {"ms", {"MY"}},
                                                          {"nl", {"NL", "BE"}},
                                                          {"no", {"NO"}},
                                                          {"pl", {"PL"}},
                                                          {"pt", {"BR", "PT"}},
                                                          {"ro", {"RO"}},
                                                          {"ru", {"RU", "KZ", "BY"}},
                                                          {"sk", {"SK"}},
                                                          {"sl", {"SI"}},
                                                          {"sr", {"RS"}},
                                                          {"sv", {"SE"}},
                                                          {"sw", {"KE", "TZ"}},
                                                          {"th", {"TH"}},
                                                          {"tl", {"PH"}},
                                                          {"tr", {"TR"}},
                                                          {"uk", {"UA"}},
                                                          {"ur", {"PK"}},
                                                          {"vi", {"VN"}},
                                                          {"zh", {"CN", "TW", "HK"}}};
  return *regions;
}

// Lower is stronger when two findings overlap.
int Priority(const std::string& type) {
  static const std::map<std::string, int> kOrder = {{"email", 1}, {"iban", 2}, {"card", 3},
                                                    {"id", 4},    {"ip", 5},   {"phone", 6}};
  auto it = kOrder.find(type);
  return it == kOrder.end() ? 0 : it->second;  // user patterns first: they are the most specific
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiAlnum(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }

// A number stands alone when it is not part of a longer one: no letter or digit touching it,
// and no separator joining it to more digits ("4111 1111 1111 1111" holds no 12-digit ID).
bool Standalone(std::string_view text, size_t b, size_t e) {
  auto separator = [](char c) { return c == ' ' || c == '.' || c == '-' || c == '/' || c == ','; };
  if (b > 0) {
    const char p = text[b - 1];
    if (IsAsciiAlnum(p) || p == '+') return false;  // "+62 812 ..." is a phone number, not a card
    if (separator(p) && b > 1 && IsDigit(text[b - 2])) return false;
  }
  if (e < text.size()) {
    const char n = text[e];
    if (IsAsciiAlnum(n)) return false;
    if (separator(n) && e + 1 < text.size() && IsDigit(text[e + 1])) return false;
  }
  return true;
}

std::string Compact(std::string_view s, bool upper) {
  std::string out;
  for (char c : s) {
    if (c == ' ' || c == '.' || c == '-') continue;
    out.push_back(upper ? absl::ascii_toupper(static_cast<unsigned char>(c)) : c);
  }
  return out;
}

void Scan(const re2::RE2& re, std::string_view text, const std::function<void(size_t, size_t)>& found) {
  re2::StringPiece input(text.data(), text.size());
  re2::StringPiece match;
  while (RE2::FindAndConsume(&input, re, &match)) {
    found(match.data() - text.data(), match.data() - text.data() + match.size());
    if (match.empty()) {
      if (input.empty()) break;
      input.remove_prefix(1);
    }
  }
}

std::unique_ptr<re2::RE2> Compile(const std::string& pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  return std::make_unique<re2::RE2>("(" + pattern + ")", options);
}

// Whether the IPv6 pattern can match at all: it needs two colons with at most four hex digits
// between them ("::" or ":1ff:"). Prose has colons, rarely like that; this skips the scan.
bool MayHoldIpv6(std::string_view text) {
  for (size_t colon = text.find(':'); colon != std::string_view::npos; colon = text.find(':', colon + 1)) {
    size_t j = colon + 1;
    while (j < text.size() && j - colon <= 4 && absl::ascii_isxdigit(static_cast<unsigned char>(text[j]))) ++j;
    if (j < text.size() && text[j] == ':') return true;
  }
  return false;
}

size_t CountDigits(std::string_view text) {
  size_t n = 0;
  for (char c : text) n += IsDigit(c);
  return n;
}

}  // namespace

// The number patterns as one RE2::Set: a single pass over the text says which of them match
// anywhere, and only those are scanned for their spans. Exact: a pattern the set does not
// report cannot match. When the set's DFA runs out of memory, every pattern is scanned.
struct PiiScrubber::NumberPrefilter {
  re2::RE2::Set set{RE2::Options(), RE2::UNANCHORED};
  std::map<const re2::RE2*, int> index;  // pattern -> its index in `set`

  // Whether `re` (one of the set's) can match somewhere in the text `hits` came from.
  static bool Possible(const std::vector<int>* hits, int i) {
    return hits == nullptr || std::find(hits->begin(), hits->end(), i) != hits->end();
  }
};

PiiScrubber::PiiScrubber(spec::PiiConfig config) : config_(std::move(config)) {}
PiiScrubber::~PiiScrubber() = default;

absl::StatusOr<std::unique_ptr<PiiScrubber>> PiiScrubber::Create(const spec::PiiConfig& config) {
  std::unique_ptr<PiiScrubber> s(new PiiScrubber(config));
  for (const auto& type : spec::PiiTypeNames()) s->placeholders_[type] = "<" + absl::AsciiStrToUpper(type) + ">";
  for (const auto& [type, text] : config.placeholders) s->placeholders_[type] = text;
  for (const auto& p : config.patterns) {
    auto re = Compile(p.regex);
    if (!re->ok())
      return absl::InvalidArgumentError(absl::StrCat("pii.patterns '", p.name, "': not valid RE2: ", re->error()));
    s->placeholders_[p.name] = p.placeholder;
    s->patterns_.emplace_back(p.name, std::move(re));
  }
  // Candidates only; each is confirmed by its checksum or parser below.
  // Local parts in Latin script (internationalised addresses are rare, and CJK text runs into
  // an address with no space before it); the top-level domain in Latin or Cyrillic letters.
  s->email_ =
      Compile(R"([\p{Latin}0-9._%+\-]+@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.(?:\p{Latin}{2,}|\p{Cyrillic}{2,}))");
  s->ipv6_ = Compile(R"((?i)(?:\b[0-9a-f]{1,4}|:)(?::[0-9a-f]{0,4}){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3})?)");
  s->numbers_ = std::make_unique<NumberPrefilter>();
  for (const auto& [pattern, re] : std::initializer_list<std::pair<const char*, std::unique_ptr<re2::RE2>*>>{
           {R"(\b[A-Za-z]{2}[0-9]{2}(?:[ ]?[A-Za-z0-9]){11,30})", &s->iban_},
           {R"(\b[0-9](?:[ \-]?[0-9]){12,18}\b)", &s->card_},
           {R"(\b[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\b)", &s->ipv4_},
           {R"(\b[XYZxyz]?[0-9]{7,8}[ \-]?[A-Za-z]\b)", &s->dni_},
           {R"(\b[0-9]{3}\.?[0-9]{3}\.?[0-9]{3}\-?[0-9]{2}\b)", &s->cpf_},
           {R"(\b[0-9]{17}[0-9Xx]\b)", &s->cn_id_},
           {R"(\b[2-9][0-9]{3}[ \-]?[0-9]{4}[ \-]?[0-9]{4}\b)", &s->aadhaar_}}) {
    *re = Compile(pattern);
    std::string error;
    const int index = s->numbers_->set.Add(pattern, &error);
    POLYTUNE_CHECK(index >= 0) << "built-in PII pattern " << pattern << ": " << error;
    s->numbers_->index[re->get()] = index;
  }
  POLYTUNE_CHECK(s->numbers_->set.Compile()) << "the built-in PII patterns do not fit RE2's memory budget";
  return s;
}

bool PiiScrubber::Enabled(const std::string& type) const {
  return config_.enabled && std::find(config_.types.begin(), config_.types.end(), type) != config_.types.end();
}

const std::string& PiiScrubber::Placeholder(const std::string& type) const { return placeholders_.at(type); }

std::vector<std::string> PiiScrubber::PhoneRegions(const std::string& lang) const {
  std::vector<std::string> regions;
  auto it = LanguageRegions().find(lang);
  if (it != LanguageRegions().end()) regions = it->second;
  for (const auto& r : config_.regions)
    if (std::find(regions.begin(), regions.end(), r) == regions.end()) regions.push_back(r);
  if (regions.empty()) regions.push_back("ZZ");  // unknown region: only numbers written with +
  return regions;
}

namespace {

// Where a phone number can be: runs of digits and the characters numbers are written with
// (spaces, - . / ( ) +) holding 6 to 20 digits (`runs`), and around them windows widened by a
// few bytes on each side so the matcher still sees what touches the number. Running
// libphonenumber on these instead of the whole text is what keeps scrubbing fast: most text
// has no such run.
struct PhoneCandidates {
  std::vector<std::pair<size_t, size_t>> runs, windows;
};

// Digits of a run that are not part of a calendar date (yyyy-mm-dd; dd.mm.yyyy, dd/mm/yyyy,
// dd-mm-yyyy and mm/dd/yyyy with a valid day and month and a year 1900-2099; "1. 1. 1970").
// Dates are to be left alone, and they were most of what libphonenumber was asked about (and
// turned down) in ordinary text.
size_t DigitsOutsideDates(std::string_view run) {
  static const re2::RE2* const kDate =
      new re2::RE2(R"((?:^|[^0-9])((?:19|20)[0-9]{2}-(?:0?[1-9]|1[0-2])-(?:0?[1-9]|[12][0-9]|3[01])|)"
                   R"((?:0?[1-9]|[12][0-9]|3[01])\. ?(?:0?[1-9]|1[0-2])\. ?(?:19|20)[0-9]{2}|)"
                   R"((?:0?[1-9]|[12][0-9]|3[01])/(?:0?[1-9]|1[0-2])/(?:19|20)[0-9]{2}|)"
                   R"((?:0?[1-9]|[12][0-9]|3[01])-(?:0?[1-9]|1[0-2])-(?:19|20)[0-9]{2}|)"
                   R"((?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12][0-9]|3[01])/(?:19|20)[0-9]{2})(?:$|[^0-9]))");
  size_t digits = CountDigits(run);
  // Every date form has a '-', '.' or '/' between its numbers; runs of digits, spaces and
  // brackets (most phone numbers and cards) need no search.
  if (run.find_first_of("-./") == std::string_view::npos) return digits;
  re2::StringPiece input(run.data(), run.size());
  if (!RE2::PartialMatch(input, *kDate)) return digits;  // no capture asked: RE2's DFA alone
  re2::StringPiece date;
  while (digits > 0 && RE2::FindAndConsume(&input, *kDate, &date)) {
    digits -= CountDigits(std::string_view(date.data(), date.size()));
    // The character after the date was consumed too; the next search starts right after the date.
    const char* date_end = date.data() + date.size();
    input = re2::StringPiece(date_end, run.data() + run.size() - date_end);
  }
  return digits;
}

PhoneCandidates FindPhoneCandidates(std::string_view text) {
  constexpr size_t kMargin = 8;
  PhoneCandidates c;
  auto part = [](char ch) {
    return IsDigit(ch) || ch == ' ' || ch == '-' || ch == '.' || ch == '/' || ch == '(' || ch == ')' || ch == '+';
  };
  size_t i = 0;
  while (i < text.size()) {
    if (!IsDigit(text[i]) && text[i] != '+' && text[i] != '(') {
      ++i;
      continue;
    }
    size_t j = i, digits = 0;
    while (j < text.size() && part(text[j])) digits += IsDigit(text[j++]);
    if (digits >= 6 && digits <= 20 && DigitsOutsideDates(text.substr(i, j - i)) >= 6) {
      c.runs.emplace_back(i, j);
      size_t b = i > kMargin ? i - kMargin : 0, e = std::min(text.size(), j + kMargin);
      while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;  // UTF-8 boundaries
      while (e < text.size() && (static_cast<unsigned char>(text[e]) & 0xC0) == 0x80) ++e;
      if (!c.windows.empty() && b <= c.windows.back().second) {
        c.windows.back().second = e;
      } else {
        c.windows.emplace_back(b, e);
      }
    }
    i = std::max(j, i + 1);
  }
  return c;
}

}  // namespace

void PiiScrubber::FindPhones(std::string_view text, const std::string& lang, std::vector<PiiSpan>* out) const {
  const PhoneCandidates candidates = FindPhoneCandidates(text);
  if (candidates.windows.empty()) return;
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  const std::vector<std::string> regions = PhoneRegions(lang);
  for (const auto& [wb, we] : candidates.windows) {
    const std::string s(text.substr(wb, we - wb));
    // The window's runs not yet inside a found number: once there are none, the remaining
    // regions cannot add anything.
    // Runs overlapping a span already found (an IBAN, card, ID...) are not open either: a phone
    // number there would lose to that span, phone being the weakest type.
    std::vector<std::pair<size_t, size_t>> open;
    for (const auto& run : candidates.runs) {
      bool taken = false;
      for (const auto& span : *out) taken |= span.begin < run.second && run.first < span.end;
      if (run.first >= wb && run.second <= we && !taken) open.push_back(run);
    }
    for (const auto& region : regions) {
      if (open.empty()) break;
      PhoneNumberMatcher matcher(util, s, region, PhoneNumberMatcher::STRICT_GROUPING, INT_MAX);
      size_t cursor = 0;
      PhoneNumberMatch match;
      while (matcher.HasNext() && matcher.Next(&match)) {
        // Offsets are located by the raw text itself, which does not depend on the unit the
        // library counts in.
        const size_t at = s.find(match.raw_string(), cursor);
        if (at == std::string::npos) continue;
        cursor = at + match.raw_string().size();
        if (!Standalone(text, wb + at, wb + cursor)) continue;
        // E.164 numbers have at most 15 digits; a longer run read as one is something else
        // (libphonenumber takes a leading "49" as Germany's country code, so a card number that
        // failed its Luhn check can otherwise pass as a German number).
        if (CountDigits(match.raw_string()) > 15) continue;
        out->push_back({wb + at, wb + cursor, "phone"});
        const size_t mb = wb + at, me = wb + cursor;
        open.erase(std::remove_if(open.begin(), open.end(),
                                  [&](const auto& run) { return run.first < me && mb < run.second; }),
                   open.end());
      }
    }
  }
}

std::vector<PiiSpan> PiiScrubber::Find(std::string_view text, const std::string& lang) const {
  std::vector<PiiSpan> found;
  if (!config_.enabled) return found;
  for (const auto& pattern : patterns_) {
    const std::string& name = pattern.first;  // a named variable: lambdas may not capture structured bindings (C++17)
    Scan(*pattern.second, text, [&](size_t b, size_t e) { found.push_back({b, e, name}); });
  }
  if (Enabled("email") && text.find('@') != std::string_view::npos)
    Scan(*email_, text, [&](size_t b, size_t e) { found.push_back({b, e, "email"}); });
  const size_t digit_count = CountDigits(text);
  const bool digits = digit_count >= 4;
  std::vector<int> number_hits;
  const std::vector<int>* hits = &number_hits;
  if (digits) {
    re2::RE2::Set::ErrorInfo error{};
    if (!numbers_->set.Match(text, &number_hits, &error) && error.kind != re2::RE2::Set::kNoError) hits = nullptr;
  }
  // Whether the number pattern `re` matches somewhere, as far as the set's pass knows.
  auto may = [&](const std::unique_ptr<re2::RE2>& re) {
    return digits && NumberPrefilter::Possible(hits, numbers_->index.at(re.get()));
  };
  if (Enabled("iban") && may(iban_)) {
    Scan(*iban_, text, [&](size_t b, size_t e) {
      // The pattern is greedy; the registered length says where this IBAN ends.
      for (size_t end = e; end > b; --end) {
        const std::string c = Compact(text.substr(b, end - b), true);
        if (c.size() < 15) break;
        if (IbanValid(c) && (end == text.size() || !IsAsciiAlnum(text[end]))) {
          found.push_back({b, end, "iban"});
          break;
        }
      }
    });
  }
  if (Enabled("card") && may(card_))
    Scan(*card_, text, [&](size_t b, size_t e) {
      if (Standalone(text, b, e) && PaymentCardValid(Compact(text.substr(b, e - b), false)))
        found.push_back({b, e, "card"});
    });
  if (Enabled("ip") && may(ipv4_)) {
    Scan(*ipv4_, text, [&](size_t b, size_t e) {
      if (Standalone(text, b, e) && Ipv4Valid(text.substr(b, e - b))) found.push_back({b, e, "ip"});
    });
  }
  if (Enabled("ip") && MayHoldIpv6(text)) {
    Scan(*ipv6_, text, [&](size_t b, size_t e) {
      std::string_view cand = text.substr(b, e - b);
      while (!cand.empty() && cand.back() == ':' && cand.substr(cand.size() >= 2 ? cand.size() - 2 : 0) != "::") {
        cand.remove_suffix(1);
      }
      const size_t colons = std::count(cand.begin(), cand.end(), ':');
      const bool has_digit = CountDigits(cand) > 0;
      // "a::b" in code and clock times are not addresses: want digits and either "::" or 5+ groups.
      if (has_digit && (colons >= 4 || cand.find("::") != std::string_view::npos) && Ipv6Valid(cand) &&
          (b + cand.size() == text.size() || !IsAsciiAlnum(text[b + cand.size()])))
        found.push_back({b, b + cand.size(), "ip"});
    });
  }
  if (Enabled("id") && digits) {
    // Each national ID: its candidate pattern, its checksum, and whether letters are upper-cased first.
    struct IdKind {
      const std::unique_ptr<re2::RE2>* pattern;
      bool (*valid)(std::string_view);
      bool upper;
    };
    for (const IdKind& id : {IdKind{&dni_, SpanishDniNieValid, true}, IdKind{&cpf_, BrazilCpfValid, false},
                             IdKind{&cn_id_, ChinaResidentIdValid, true}, IdKind{&aadhaar_, AadhaarValid, false}}) {
      if (!may(*id.pattern)) continue;
      Scan(**id.pattern, text, [&](size_t b, size_t e) {
        if (Standalone(text, b, e) && id.valid(Compact(text.substr(b, e - b), id.upper))) found.push_back({b, e, "id"});
      });
    }
  }
  if (Enabled("phone") && digit_count >= 6) FindPhones(text, lang, &found);  // a candidate run has 6 or more

  // Overlaps: the stronger type wins, then the earlier and longer span.
  std::sort(found.begin(), found.end(), [](const PiiSpan& a, const PiiSpan& b) {
    const int pa = Priority(a.type), pb = Priority(b.type);
    if (pa != pb) return pa < pb;
    if (a.begin != b.begin) return a.begin < b.begin;
    return a.end > b.end;
  });
  std::vector<PiiSpan> kept;
  for (auto& span : found) {
    bool overlaps = false;
    for (const auto& k : kept) overlaps |= span.begin < k.end && k.begin < span.end;
    if (!overlaps) kept.push_back(std::move(span));
  }
  std::sort(kept.begin(), kept.end(), [](const PiiSpan& a, const PiiSpan& b) { return a.begin < b.begin; });
  return kept;
}

std::string PiiScrubber::Scrub(std::string_view text, const std::string& lang,
                               std::map<std::string, int64_t>* counts) const {
  std::string out(text);
  ScrubInPlace(&out, lang, counts);
  return out;
}

bool PiiScrubber::ScrubInPlace(std::string* io, const std::string& lang, std::map<std::string, int64_t>* counts) const {
  const std::string_view text = *io;
  const std::vector<PiiSpan> spans = Find(text, lang);
  if (spans.empty()) return false;
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (const auto& s : spans) {
    out.append(text.substr(pos, s.begin - pos));
    out.append(placeholders_.at(s.type));
    if (counts != nullptr) ++(*counts)[s.type];
    pos = s.end;
  }
  out.append(text.substr(pos));
  *io = std::move(out);
  return true;
}

}  // namespace polytune::dataprep
