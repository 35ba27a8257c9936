// Exact and near-duplicate detection.
//
// Both work on "match-normalised" text: NFKC with full Unicode case folding, Turkish dotted and
// dotless i made one letter (İ, I, ı, i all fold to i), punctuation removed, whitespace runs
// made one space. Exact duplicates share a 128-bit hash of it; near duplicates are found by
// MinHash-LSH over shingles (word n-grams for space-delimited scripts, character n-grams for
// CJK and Thai) and confirmed by the real Jaccard similarity of the two shingle sets, so the
// LSH's false positives never drop an example.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace polytune::dataprep {

std::string MatchNormalize(std::string_view utf8_text);

struct Hash128 {
  uint64_t hi = 0, lo = 0;
  bool operator==(const Hash128& o) const { return hi == o.hi && lo == o.lo; }
  template <typename H>
  friend H AbslHashValue(H h, const Hash128& v) {
    return H::combine(std::move(h), v.hi, v.lo);
  }
};
Hash128 HashText(std::string_view text);

// Sorted, distinct 64-bit hashes of the text's shingles. A text shorter than one shingle is
// one shingle of itself (so two identical short texts still match).
std::vector<uint64_t> Shingles(std::string_view normalized, bool char_shingles, int n);
// The same hashes in text order, repeats kept: enough for a MinHash signature (a minimum does
// not care about order or repeats) without Shingles' sort.
std::vector<uint64_t> ShingleHashes(std::string_view normalized, bool char_shingles, int n);
double Jaccard(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b);

// bands x rows <= max_permutations minimising the weighted area of false negatives above the
// threshold and false positives below it, as datasketch's optimal parameters do, with weights
// 0.9 and 0.1 rather than its equal ones: every candidate is verified by its real Jaccard, so a
// false candidate costs only time while a missed one is a duplicate kept. The candidate
// probability at similarity s is 1 - (1 - s^rows)^bands; 0.8 within 128 gives 14 x 9.
struct LshParams {
  int bands = 0, rows = 0;
  int permutations() const { return bands * rows; }
};
LshParams ChooseLshParams(double threshold, int max_permutations);
double CandidateProbability(double similarity, const LshParams& p);

// MinHash signatures by one permutation hashing: each shingle is hashed once into one of
// `num_permutations` bins, and empty bins are filled by optimal densification. Each position
// agrees between two texts with probability equal to their Jaccard similarity, as with
// `num_permutations` independent permutations, at the cost of one hash per shingle instead of
// one per shingle and permutation.
class MinHasher {
 public:
  MinHasher(int num_permutations, uint64_t seed);
  // Shingle hashes in any order, repeats allowed. No shingles: every value 0xFFFFFFFF.
  std::vector<uint32_t> Signature(const std::vector<uint64_t>& shingles) const;

 private:
  int bins_;
  uint64_t hash_seed_, probe_seed_;
};

// The LSH index over the signatures of kept examples: per band, a table from the band's hash
// to the latest example holding it, chained to earlier ones (4 bytes per example per band).
class LshIndex {
 public:
  explicit LshIndex(LshParams params);
  // Ids of indexed examples sharing at least one band with `signature`, each once, oldest first.
  std::vector<uint32_t> Candidates(const std::vector<uint32_t>& signature) const;
  // Ids must be inserted in increasing order, starting at 0.
  void Insert(uint32_t id, const std::vector<uint32_t>& signature);
  size_t MemoryBytes() const;

 private:
  uint64_t BandHash(const std::vector<uint32_t>& signature, int band) const;
  static constexpr uint32_t kNone = 0xFFFFFFFFu;
  LshParams params_;
  std::vector<absl::flat_hash_map<uint64_t, uint32_t>> heads_;  // per band
  std::vector<uint32_t> next_;                                  // [id * bands + band]
};

}  // namespace polytune::dataprep
