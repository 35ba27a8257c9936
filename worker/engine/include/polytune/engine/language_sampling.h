// Language-balanced sampling: how many examples of each language one sampling round holds.
// A round replaces an epoch in the visiting order (BatchSchedule): its slots are shuffled with
// the seed, and each language's slots walk through that language's own seeded permutations,
// so every example of a language is visited once before any is visited twice.
#pragma once

#include <cstdint>
#include <vector>

#include "polytune/spec/job_spec.h"

namespace polytune::engine {

// Examples per language in one round, for languages of `sizes` examples (sizes[l] > 0).
// natural: the sizes themselves. temperature: N * n_l^alpha / sum_k n_k^alpha. unimax (Chung et
// al. 2023, Algorithm 1): languages from the smallest up each take an equal share of what is
// left of the budget N, capped at max_epochs_per_language * n_l. Real-valued shares become
// integers by the largest-remainder method (ties to the lower language index), so the round
// holds exactly round(sum of shares) examples; every language with data gets at least one.
std::vector<int64_t> LanguageRoundCounts(const std::vector<int64_t>& sizes, const spec::LanguageSampling& sampling);

// The real-valued shares before rounding (for tests and `data inspect`).
std::vector<double> LanguageShares(const std::vector<int64_t>& sizes, const spec::LanguageSampling& sampling);

}  // namespace polytune::engine
