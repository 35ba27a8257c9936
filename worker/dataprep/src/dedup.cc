#include "polytune/dataprep/dedup.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "char_props.h"
#include "polytune/common/check.h"
#include "text_hash.h"
#include "utf8_cursor.h"

namespace polytune::dataprep {
namespace {

// Midpoint rule, 200 steps: the sample points of [a, b].
std::vector<double> MidpointGrid(double a, double b) {
  constexpr int kSteps = 200;
  std::vector<double> points(kSteps);
  for (int i = 0; i < kSteps; ++i) points[i] = a + (i + 0.5) * (b - a) / kSteps;
  return points;
}

}  // namespace

namespace {
// Whitespace and punctuation: where match-normalised text has (at most) one space.
bool IsBreak(UChar32 c) { return IsSpaceOrPunct(PropsOf(c)); }
}  // namespace

std::string MatchNormalize(std::string_view text) {
  static const std::array<bool, 128> ascii_break = [] {  // the same answers, without ICU's lookups
    std::array<bool, 128> t{};
    for (UChar32 c = 0; c < 128; ++c) t[c] = IsBreak(c);
    return t;
  }();
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfkc_cf = icu::Normalizer2::getNFKCCasefoldInstance(status);
  std::string folded;
  bool ascii = true;
  for (unsigned char c : text) ascii &= c < 0x80;
  if (ascii) {  // fold and collapse in one pass: the loop below, for ASCII
    std::string out;
    out.reserve(text.size());
    bool pending_space = false;
    for (char c : text) {
      if (ascii_break[static_cast<unsigned char>(c)]) {
        pending_space = !out.empty();
        continue;
      }
      if (pending_space) out.push_back(' ');
      pending_space = false;
      out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
    }
    return out;
  } else {
    icu::StringByteSink<std::string> sink(&folded);
    nfkc_cf->normalizeUTF8(0, icu::StringPiece(text.data(), text.size()), sink, nullptr, status);
    if (U_FAILURE(status)) folded = std::string(text);
  }
  std::string out;
  out.reserve(folded.size());
  bool pending_space = false;
  const auto* s = reinterpret_cast<const uint8_t*>(folded.data());
  const int32_t n = static_cast<int32_t>(folded.size());
  for (int32_t i = 0; i < n;) {
    int32_t run = i;  // ASCII letters, digits and symbols: copied as one piece
    while (run < n && s[run] < 0x80 && !ascii_break[s[run]]) ++run;
    if (run > i) {
      if (pending_space) out.push_back(' ');
      pending_space = false;
      out.append(folded, i, run - i);
      i = run;
      continue;
    }
    const int32_t start = i;
    UChar32 c = NextCodePoint(s, i, n);
    if (c < 0) continue;
    if (c == 0x0131) c = 'i';   // dotless ı (Turkish) folds with i
    if (c == 0x0307) continue;  // the combining dot İ folds to (i + U+0307)
    if (c < 0x80 ? ascii_break[c] : IsBreak(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.append(folded, start, i - start);
    }
  }
  return out;
}

Hash128 HashText(std::string_view text) { return {HashBytes(text, 0x5151), HashBytes(text, 0xA3A3)}; }

std::vector<uint64_t> ShingleHashes(std::string_view normalized, bool char_shingles, int n) {
  // The units and their hashes in a thread's reused buffers (views into `normalized`, cleared
  // before each use).
  thread_local std::vector<std::string_view> units;
  thread_local std::vector<uint64_t> unit_hashes;
  units.clear();
  if (char_shingles) {
    // Characters other than spaces (CJK and Thai text has few, and they carry no meaning).
    const auto* s = reinterpret_cast<const uint8_t*>(normalized.data());
    const int32_t len = static_cast<int32_t>(normalized.size());
    for (int32_t i = 0; i < len;) {
      const int32_t start = i;
      if (NextCodePoint(s, i, len) != ' ') units.push_back(normalized.substr(start, i - start));
    }
  } else {
    size_t pos = 0;
    while (pos < normalized.size()) {
      size_t sp = normalized.find(' ', pos);
      if (sp == std::string_view::npos) sp = normalized.size();
      if (sp > pos) units.push_back(normalized.substr(pos, sp - pos));
      pos = sp + 1;
    }
  }
  std::vector<uint64_t> out;
  if (units.empty()) return out;
  const size_t k = std::min<size_t>(n, units.size());
  // Each unit hashed once; a shingle combines k of them in order (multiplying by an odd
  // constant between them makes the combination order-sensitive), then mixes the result.
  unit_hashes.resize(units.size());
  for (size_t i = 0; i < units.size(); ++i) unit_hashes[i] = HashBytes(units[i], 0);
  out.reserve(units.size() - k + 1);
  for (size_t i = 0; i + k <= units.size(); ++i) {
    uint64_t h = 0x243F6A8885A308D3ULL;
    for (size_t j = 0; j < k; ++j) h = (h ^ unit_hashes[i + j]) * 0x9E3779B97F4A7C15ULL;
    out.push_back(Mix64(h));
  }
  return out;
}

std::vector<uint64_t> Shingles(std::string_view normalized, bool char_shingles, int n) {
  std::vector<uint64_t> out = ShingleHashes(normalized, char_shingles, n);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

double Jaccard(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  if (a.empty() && b.empty()) return 1.0;
  size_t i = 0, j = 0, inter = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i] == b[j]) {
      ++inter;
      ++i;
      ++j;
    } else if (a[i] < b[j]) {
      ++i;
    } else {
      ++j;
    }
  }
  return static_cast<double>(inter) / static_cast<double>(a.size() + b.size() - inter);
}

double CandidateProbability(double s, const LshParams& p) { return 1.0 - std::pow(1.0 - std::pow(s, p.rows), p.bands); }

LshParams ChooseLshParams(double threshold, int max_permutations) {
  // Error = 0.1 * (false-positive area below the threshold) + 0.9 * (false-negative area above
  // it). For each row count, (1 - s^rows)^bands is built up one band at a time (a
  // multiplication per point, not a pow): the 128-permutation table took 30 ms with pow.
  const std::vector<double> below = MidpointGrid(0.0, threshold), above = MidpointGrid(threshold, 1.0);
  const double h_below = threshold / below.size(), h_above = (1.0 - threshold) / above.size();
  LshParams best;
  double best_error = std::numeric_limits<double>::infinity();
  for (int rows = 1; rows <= max_permutations; ++rows) {
    std::vector<double> base_below(below.size()), base_above(above.size());  // 1 - s^rows
    for (size_t i = 0; i < below.size(); ++i) base_below[i] = 1.0 - std::pow(below[i], rows);
    for (size_t i = 0; i < above.size(); ++i) base_above[i] = 1.0 - std::pow(above[i], rows);
    std::vector<double> miss_below(below.size(), 1.0), miss_above(above.size(), 1.0);  // (1 - s^rows)^bands
    for (int bands = 1; bands * rows <= max_permutations; ++bands) {
      double fp = 0, fn = 0;
      for (size_t i = 0; i < below.size(); ++i) fp += (1.0 - (miss_below[i] *= base_below[i])) * h_below;
      for (size_t i = 0; i < above.size(); ++i) fn += (miss_above[i] *= base_above[i]) * h_above;
      const double error = 0.1 * fp + 0.9 * fn;
      // Ties go to fewer bands, then fewer rows.
      if (error < best_error ||
          (error == best_error && std::make_pair(bands, rows) < std::make_pair(best.bands, best.rows))) {
        best_error = error;
        best = {bands, rows};
      }
    }
  }
  return best;
}

MinHasher::MinHasher(int num_permutations, uint64_t seed)
    : bins_(num_permutations),
      hash_seed_(Mix64(seed ^ 0x243F6A8885A308D3ULL)),
      probe_seed_(Mix64(seed ^ 0x13198A2E03707344ULL)) {
  POLYTUNE_CHECK(num_permutations > 0) << "a signature needs at least one value";
}

std::vector<uint32_t> MinHasher::Signature(const std::vector<uint64_t>& shingles) const {
  const uint64_t k = static_cast<uint64_t>(bins_);
  std::vector<uint32_t> sig(bins_, 0xFFFFFFFFu);
  std::vector<uint8_t> filled(bins_, 0);
  // One permutation: the high half of each shingle's hash picks its bin, the low half competes
  // for that bin's minimum.
  for (const uint64_t x : shingles) {
    const uint64_t h = Mix64(x ^ hash_seed_);
    const size_t bin = static_cast<size_t>(((h >> 32) * k) >> 32);
    const uint32_t v = static_cast<uint32_t>(h);
    sig[bin] = v < sig[bin] ? v : sig[bin];
    filled[bin] = 1;
  }
  if (shingles.empty()) return sig;
  // Optimal densification (Shrivastava, ICML 2017): an empty bin copies the first filled bin
  // of a probe sequence that depends only on the bin, the same for every text, so two texts
  // agree on a position with probability equal to their Jaccard similarity, as with k
  // independent permutations. After 8k probes (the filled bins are very few), the next filled
  // bin to the right, which is deterministic as well.
  for (uint64_t i = 0; i < k; ++i) {
    if (filled[i]) continue;
    uint64_t j = k;
    for (uint64_t attempt = 1; attempt <= 8 * k && j == k; ++attempt) {
      const uint64_t probe = ((Mix64(probe_seed_ ^ (i << 32) ^ attempt) >> 32) * k) >> 32;
      if (filled[probe]) j = probe;
    }
    for (uint64_t step = 1; j == k; ++step)
      if (filled[(i + step) % k]) j = (i + step) % k;
    sig[i] = sig[j];
  }
  return sig;
}

LshIndex::LshIndex(LshParams params) : params_(params), heads_(params.bands) {}

uint64_t LshIndex::BandHash(const std::vector<uint32_t>& sig, int band) const {
  uint64_t h = static_cast<uint64_t>(band) * 0x9E3779B97F4A7C15ULL;
  for (int r = 0; r < params_.rows; ++r) h = Mix64(h ^ sig[band * params_.rows + r]);
  return h;
}

std::vector<uint32_t> LshIndex::Candidates(const std::vector<uint32_t>& sig) const {
  POLYTUNE_CHECK(static_cast<int>(sig.size()) >= params_.permutations()) << "signature shorter than bands x rows";
  std::vector<uint32_t> out;
  for (int band = 0; band < params_.bands; ++band) {
    auto it = heads_[band].find(BandHash(sig, band));
    if (it == heads_[band].end()) continue;
    for (uint32_t id = it->second; id != kNone; id = next_[static_cast<size_t>(id) * params_.bands + band])
      out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void LshIndex::Insert(uint32_t id, const std::vector<uint32_t>& sig) {
  POLYTUNE_CHECK(static_cast<size_t>(id) * params_.bands == next_.size()) << "LSH ids must be dense and increasing";
  next_.resize(next_.size() + params_.bands, kNone);
  for (int band = 0; band < params_.bands; ++band) {
    auto [it, inserted] = heads_[band].try_emplace(BandHash(sig, band), id);
    if (!inserted) {
      next_[static_cast<size_t>(id) * params_.bands + band] = it->second;
      it->second = id;
    }
  }
}

size_t LshIndex::MemoryBytes() const {
  size_t bytes = next_.capacity() * sizeof(uint32_t);
  for (const auto& m : heads_) bytes += m.capacity() * (sizeof(uint64_t) + sizeof(uint32_t) + 1);
  return bytes;
}

}  // namespace polytune::dataprep
