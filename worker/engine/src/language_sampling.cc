#include "polytune/engine/language_sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace polytune::engine {

std::vector<double> LanguageShares(const std::vector<int64_t>& sizes, const spec::LanguageSampling& s) {
  const size_t L = sizes.size();
  std::vector<double> share(L, 0.0);
  const double total = static_cast<double>(std::accumulate(sizes.begin(), sizes.end(), int64_t{0}));
  switch (s.strategy) {
    case spec::SamplingStrategy::kNatural:
      for (size_t l = 0; l < L; ++l) share[l] = static_cast<double>(sizes[l]);
      break;
    case spec::SamplingStrategy::kTemperature: {
      double z = 0;
      for (size_t l = 0; l < L; ++l) z += std::pow(static_cast<double>(sizes[l]), s.alpha);
      for (size_t l = 0; l < L; ++l) share[l] = total * std::pow(static_cast<double>(sizes[l]), s.alpha) / z;
      break;
    }
    case spec::SamplingStrategy::kUnimax: {
      std::vector<size_t> order(L);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sizes[a] < sizes[b]; });
      double remaining = total;
      for (size_t i = 0; i < L; ++i) {
        const size_t l = order[i];
        const double uniform = remaining / static_cast<double>(L - i);
        share[l] = std::min(uniform, s.max_epochs_per_language * static_cast<double>(sizes[l]));
        remaining -= share[l];
      }
      break;
    }
  }
  return share;
}

std::vector<int64_t> LanguageRoundCounts(const std::vector<int64_t>& sizes, const spec::LanguageSampling& s) {
  const std::vector<double> share = LanguageShares(sizes, s);
  const size_t L = sizes.size();
  std::vector<int64_t> counts(L, 0);
  const double sum = std::accumulate(share.begin(), share.end(), 0.0);
  const int64_t target = static_cast<int64_t>(std::llround(sum));
  int64_t assigned = 0;
  std::vector<std::pair<double, size_t>> remainders;
  for (size_t l = 0; l < L; ++l) {
    counts[l] = static_cast<int64_t>(std::floor(share[l]));
    assigned += counts[l];
    remainders.emplace_back(share[l] - std::floor(share[l]), l);
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; assigned < target && i < remainders.size(); ++i, ++assigned) ++counts[remainders[i].second];
  for (size_t l = 0; l < L; ++l)
    if (sizes[l] > 0 && counts[l] == 0) counts[l] = 1;
  return counts;
}

}  // namespace polytune::engine
