#include "polytune/text/text_metrics.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <unordered_map>

namespace polytune::text {
namespace {

// UTF-8 to code points; a byte that starts no valid sequence becomes U+FFFD.
std::u32string CodePoints(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      ok = (d >> 6) == 2;
      cp = (cp << 6) | (d & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    if (ok)
      ok = !(len == 2 && cp < 0x80) && !(len == 3 && cp < 0x800) && !(len == 4 && cp < 0x10000) &&
           !(cp >= 0xd800 && cp <= 0xdfff) && cp <= 0x10ffff;
    out.push_back(ok ? cp : U'\ufffd');
    i += ok ? len : 1;
  }
  return out;
}

// What Python's str.split() (and so sacreBLEU) splits on.
bool IsPythonSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

bool IsAsciiPunct(char32_t c) {
  static const std::u32string kPunct = U"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
  return kPunct.find(c) != std::u32string::npos;
}

std::vector<std::u32string> SplitWords(const std::u32string& s) {
  std::vector<std::u32string> words;
  std::u32string cur;
  for (char32_t c : s) {
    if (IsPythonSpace(c)) {
      if (!cur.empty()) words.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

// chrF++'s tokenisation: one punctuation mark split off the end, else off the start.
std::vector<std::u32string> WordsForChrf(const std::u32string& s) {
  std::vector<std::u32string> out;
  for (auto& w : SplitWords(s)) {
    if (w.size() > 1 && IsAsciiPunct(w.back())) {
      out.push_back(w.substr(0, w.size() - 1));
      out.push_back(w.substr(w.size() - 1));
    } else if (w.size() > 1 && IsAsciiPunct(w.front())) {
      out.push_back(w.substr(0, 1));
      out.push_back(w.substr(1));
    } else {
      out.push_back(std::move(w));
    }
  }
  return out;
}

using NgramCounts = std::unordered_map<std::u32string, int64_t>;

// Counters per order: character orders 1..char_order, then word orders 1..word_order.
std::vector<NgramCounts> AllNgrams(const std::string& text, const ChrfOptions& o) {
  const std::u32string cps = CodePoints(text);
  std::u32string chars;
  for (char32_t c : cps)
    if (!IsPythonSpace(c)) chars.push_back(c);
  std::vector<NgramCounts> out;
  for (int n = 1; n <= o.char_order; ++n) {
    NgramCounts counts;
    for (size_t i = 0; i + n <= chars.size(); ++i) ++counts[chars.substr(i, n)];
    out.push_back(std::move(counts));
  }
  if (o.word_order > 0) {
    const auto words = WordsForChrf(cps);
    for (int n = 1; n <= o.word_order; ++n) {
      NgramCounts counts;
      for (size_t i = 0; i + n <= words.size(); ++i) {
        std::u32string key = words[i];
        for (int k = 1; k < n; ++k) key += U' ' + words[i + k];
        ++counts[key];
      }
      out.push_back(std::move(counts));
    }
  }
  return out;
}

std::string ToUtf8(const icu::UnicodeString& u) {
  std::string out;
  u.toUTF8String(out);
  return out;
}

}  // namespace

void ChrfStats::Add(const ChrfStats& other) {
  if (counts.empty()) counts.assign(other.counts.size(), 0);
  for (size_t i = 0; i < counts.size() && i < other.counts.size(); ++i) counts[i] += other.counts[i];
}

ChrfStats ChrfSegmentStats(const std::string& hypothesis, const std::string& reference, const ChrfOptions& options) {
  const auto hyp = AllNgrams(hypothesis, options);
  const auto ref = AllNgrams(reference, options);
  ChrfStats stats;
  for (size_t order = 0; order < hyp.size(); ++order) {
    int64_t hyp_count = 0, ref_count = 0, match = 0;
    for (const auto& [gram, n] : hyp[order]) {
      hyp_count += n;
      auto it = ref[order].find(gram);
      if (it != ref[order].end()) match += std::min(n, it->second);
    }
    for (const auto& [gram, n] : ref[order]) ref_count += n;
    // As sacreBLEU: hypothesis n-grams do not count when the reference has none of that order.
    stats.counts.insert(stats.counts.end(), {ref[order].empty() ? 0 : hyp_count, ref_count, match});
  }
  return stats;
}

double ChrfScore(const ChrfStats& stats, const ChrfOptions& options) {
  const double factor = options.beta * options.beta;
  double avg_prec = 0, avg_rec = 0;
  int effective_order = 0;
  for (size_t i = 0; i + 2 < stats.counts.size(); i += 3) {
    const int64_t n_hyp = stats.counts[i], n_ref = stats.counts[i + 1], n_match = stats.counts[i + 2];
    if (n_hyp > 0 && n_ref > 0) {
      avg_prec += static_cast<double>(n_match) / static_cast<double>(n_hyp);
      avg_rec += static_cast<double>(n_match) / static_cast<double>(n_ref);
      ++effective_order;
    }
  }
  if (effective_order == 0) return 0.0;
  avg_prec /= effective_order;
  avg_rec /= effective_order;
  if (avg_prec + avg_rec == 0) return 0.0;
  return 100 * (1 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec);
}

std::string NormalizeForMatch(const std::string& text) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfkc_cf = icu::Normalizer2::getNFKCCasefoldInstance(status);
  icu::UnicodeString in = icu::UnicodeString::fromUTF8(text);
  icu::UnicodeString folded = U_SUCCESS(status) ? nfkc_cf->normalize(in, status) : in;
  if (U_FAILURE(status)) folded = in.foldCase();
  icu::UnicodeString out;
  bool pending_space = false;
  for (int32_t i = 0; i < folded.length();) {
    const UChar32 c = folded.char32At(i);
    i += U16_LENGTH(c);
    if (u_isUWhiteSpace(c)) {
      pending_space = !out.isEmpty();
      continue;
    }
    if (pending_space) out.append(static_cast<UChar>(' '));
    pending_space = false;
    out.append(c);
  }
  return ToUtf8(out);
}

std::string NormalizeLabel(const std::string& text) {
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(NormalizeForMatch(text));
  auto strip = [](UChar32 c) {
    const int32_t mask = U_GET_GC_MASK(c);
    return u_isUWhiteSpace(c) || (mask & (U_GC_P_MASK | U_GC_S_MASK)) != 0;
  };
  int32_t begin = 0, end = u.length();
  while (begin < end && strip(u.char32At(begin))) begin = u.moveIndex32(begin, 1);
  while (end > begin) {
    const int32_t prev = u.moveIndex32(end, -1);
    if (!strip(u.char32At(prev))) break;
    end = prev;
  }
  return ToUtf8(u.tempSubStringBetween(begin, end));
}

ClassificationCounts::ClassificationCounts(std::vector<std::string> classes) : classes_(std::move(classes)) {
  std::sort(classes_.begin(), classes_.end());
  classes_.erase(std::unique(classes_.begin(), classes_.end()), classes_.end());
  for (size_t i = 0; i < classes_.size(); ++i) index_[classes_[i]] = i;
  counts_.assign(2 + 3 * classes_.size(), 0.0);
}

void ClassificationCounts::Add(const std::string& predicted, const std::string& reference) {
  counts_[0] += 1;
  auto ref = index_.find(reference);
  auto pred = index_.find(predicted);
  if (predicted == reference && ref != index_.end()) {
    counts_[1] += 1;
    counts_[2 + 3 * ref->second] += 1;  // tp
    return;
  }
  if (pred != index_.end()) counts_[2 + 3 * pred->second + 1] += 1;  // fp
  if (ref != index_.end()) counts_[2 + 3 * ref->second + 2] += 1;    // fn
}

ClassificationCounts::Figures ClassificationCounts::Compute() const {
  Figures f;
  f.examples = static_cast<int64_t>(counts_[0]);
  if (counts_[0] > 0) f.accuracy = counts_[1] / counts_[0];
  if (classes_.empty()) return f;
  for (size_t c = 0; c < classes_.size(); ++c) {
    const double tp = counts_[2 + 3 * c], fp = counts_[3 + 3 * c], fn = counts_[4 + 3 * c];
    const double p = tp + fp > 0 ? tp / (tp + fp) : 0.0;
    const double r = tp + fn > 0 ? tp / (tp + fn) : 0.0;
    f.macro_precision += p;
    f.macro_recall += r;
    f.macro_f1 += p + r > 0 ? 2 * p * r / (p + r) : 0.0;
  }
  const double n = static_cast<double>(classes_.size());
  f.macro_precision /= n;
  f.macro_recall /= n;
  f.macro_f1 /= n;
  return f;
}

}  // namespace polytune::text
