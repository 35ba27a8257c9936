// Language-balanced sampling (round sizes by the formulas, the visiting order they give) and
// per-language loss weights (the weighted loss and its normalisation).
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "polytune/engine/chunked_loss.h"
#include "polytune/engine/language_sampling.h"
#include "polytune/engine/token_dataset.h"
#include "polytune/engine/train_step.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

spec::LanguageSampling Sampling(spec::SamplingStrategy s, double alpha = 0.3, double max_epochs = 4) {
  spec::LanguageSampling out;
  out.strategy = s;
  out.alpha = alpha;
  out.max_epochs_per_language = max_epochs;
  return out;
}

TEST(LanguageSampling, SharesFollowTheFormulas) {
  const std::vector<int64_t> sizes = {1000, 100, 10};
  // natural: the sizes.
  EXPECT_EQ(LanguageRoundCounts(sizes, Sampling(spec::SamplingStrategy::kNatural)), sizes);
  // temperature: N * n^a / sum n^a.
  const auto t = LanguageShares(sizes, Sampling(spec::SamplingStrategy::kTemperature, 0.3));
  const double z = std::pow(1000, 0.3) + std::pow(100, 0.3) + std::pow(10, 0.3);
  for (size_t l = 0; l < sizes.size(); ++l) EXPECT_NEAR(t[l], 1110 * std::pow(sizes[l], 0.3) / z, 1e-9);
  const auto tc = LanguageRoundCounts(sizes, Sampling(spec::SamplingStrategy::kTemperature, 0.3));
  EXPECT_EQ(tc[0] + tc[1] + tc[2], 1110);
  for (size_t l = 0; l < sizes.size(); ++l) EXPECT_LE(std::abs(tc[l] - t[l]), 1.0);
  // alpha 1 is natural sampling.
  EXPECT_EQ(LanguageRoundCounts(sizes, Sampling(spec::SamplingStrategy::kTemperature, 1.0)), sizes);
  // UniMax, worked by hand: budget 1110; smallest first: 10 -> min(1110/3, 4*10) = 40;
  // 100 -> min(1070/2, 400) = 400; 1000 -> min(670/1, 4000) = 670.
  EXPECT_EQ(LanguageRoundCounts(sizes, Sampling(spec::SamplingStrategy::kUnimax, 0.3, 4)),
            (std::vector<int64_t>{670, 400, 40}));
  // With a generous cap UniMax is uniform.
  EXPECT_EQ(LanguageRoundCounts({90, 60, 30}, Sampling(spec::SamplingStrategy::kUnimax, 0.3, 100)),
            (std::vector<int64_t>{60, 60, 60}));
}

TokenDataset Languages(const std::vector<int64_t>& sizes) {
  TokenDataset d;
  for (size_t l = 0; l < sizes.size(); ++l) {
    d.languages.push_back(std::string(1, static_cast<char>('a' + l)));
    for (int64_t i = 0; i < sizes[l]; ++i) {
      TokenExample ex;
      ex.input_ids = {1, 2, 3};
      ex.labels = ex.input_ids;
      ex.language = static_cast<int32_t>(l);
      d.examples.push_back(ex);
    }
  }
  return d;
}

TEST(LanguageSampling, ScheduleVisitsEachLanguageByItsRoundCountAndItsExamplesEvenly) {
  const TokenDataset d = Languages({200, 30, 6});
  const BatchSchedule s(d, 8, 42, Sampling(spec::SamplingStrategy::kTemperature, 0.3));
  const auto& counts = s.round_counts();
  ASSERT_EQ(counts.size(), 3u);
  EXPECT_EQ(s.round_size(), 236);
  const int64_t rounds = 5;
  std::vector<int64_t> per_language(3, 0);
  std::map<int64_t, int64_t> visits;
  for (int64_t pos = 0; pos < rounds * s.round_size(); ++pos) {
    const int64_t ex = s.ExampleAt(pos);
    ++per_language[d.examples[ex].language];
    ++visits[ex];
    if ((pos + 1) % s.round_size() == 0) {  // each round holds exactly its counts
      const int64_t r = (pos + 1) / s.round_size();
      for (int l = 0; l < 3; ++l) EXPECT_EQ(per_language[l], r * counts[l]) << "round " << r << " language " << l;
    }
  }
  // Within a language every example is visited floor or ceil of its share of the visits.
  for (int l = 0; l < 3; ++l) {
    int64_t n = 0, first = 0;
    for (size_t i = 0; i < d.examples.size(); ++i)
      if (d.examples[i].language == l && n++ == 0) first = static_cast<int64_t>(i);
    const int64_t total = rounds * counts[l];
    for (int64_t i = first; i < first + n; ++i) {
      EXPECT_GE(visits[i], total / n) << i;
      EXPECT_LE(visits[i], (total + n - 1) / n) << i;
    }
  }
  // A pure function of (seed, position): a fresh schedule agrees at any position (resume), a
  // different seed does not.
  const BatchSchedule again(d, 8, 42, Sampling(spec::SamplingStrategy::kTemperature, 0.3));
  const BatchSchedule other(d, 8, 43, Sampling(spec::SamplingStrategy::kTemperature, 0.3));
  int differ = 0;
  for (int64_t pos : {999, 3, 500, 0, 1180, 77}) {
    EXPECT_EQ(again.ExampleAt(pos), s.ExampleAt(pos));
    differ += other.ExampleAt(pos) != s.ExampleAt(pos);
  }
  EXPECT_GT(differ, 0);
  EXPECT_DOUBLE_EQ(s.EpochAt(59), 59.0 * 8 / 236);
  EXPECT_EQ(s.StepsForEpochs(2), (2 * 236 + 7) / 8);
}

TEST(LanguageSampling, NaturalIsTheUnsampledOrder) {
  const TokenDataset d = Languages({20, 7, 3});
  const BatchSchedule sampled(d, 4, 9, Sampling(spec::SamplingStrategy::kNatural));
  const BatchSchedule plain(30, 4, 9);
  for (int64_t pos = 0; pos < 100; ++pos) EXPECT_EQ(sampled.ExampleAt(pos), plain.ExampleAt(pos));
}

TEST(LanguageWeights, ChunkedLossIsTheWeightedSumWithItsGradient) {
  at::manual_seed(4);
  const int64_t rows = 3, seq = 9, h = 16, v = 50;
  at::Tensor head = at::randn({v, h}) * 0.3;
  at::Tensor labels = at::randint(0, v, {rows, seq}, at::kLong);
  labels.slice(1, 0, 2).fill_(kIgnoreIndex);
  at::Tensor weights = at::tensor({2.0f, 0.5f, 1.0f}).view({rows, 1}).expand({rows, seq}).contiguous();
  at::Tensor base = at::randn({rows, seq, h});
  // Reference: per-token cross-entropy from full logits, times the weight of the target's row.
  at::Tensor ref_hidden = base.clone().requires_grad_(true);
  at::Tensor logits = at::matmul(ref_hidden.slice(1, 0, seq - 1), head.t()).reshape({-1, v});
  at::Tensor per_token =
      at::cross_entropy_loss(logits, labels.slice(1, 1).reshape({-1}), {}, at::Reduction::None, kIgnoreIndex);
  at::Tensor ref = (per_token * weights.slice(1, 1).reshape({-1})).sum();
  ref.backward();
  for (int64_t chunk : {4, 27}) {
    at::Tensor hidden = base.clone().requires_grad_(true);
    at::Tensor loss = ChunkedTokenCrossEntropySum(hidden, head, labels, chunk, weights);
    loss.backward();
    EXPECT_LT(std::abs(loss.item<double>() - ref.item<double>()) / ref.item<double>(), 1e-6) << chunk;
    EXPECT_LT(testing::RelativeMaxError(hidden.grad(), ref_hidden.grad()), 1e-6) << chunk;
  }
}

TEST(LanguageWeights, PlanNormalisesByTheWeightedTargetsOfTheWholeStep) {
  TokenDataset d = Languages({3, 1});
  d.examples[3].input_ids = {1, 2, 3, 4, 5};  // language b: 4 targets; language a: 2 each
  d.examples[3].labels = d.examples[3].input_ids;
  spec::LanguageWeights explicit_weights;
  explicit_weights.mode = spec::LanguageWeights::Mode::kExplicit;
  explicit_weights.weights = {{"b", 3.0}};
  const std::vector<double> w = ResolveLanguageWeights(explicit_weights, d);
  EXPECT_EQ(w, (std::vector<double>{1.0, 3.0}));
  const BatchSchedule schedule(4, 4, 1);
  const StepPlan plan = PlanStep(d, schedule, 0, 1, 2, 2, w);
  EXPECT_EQ(plan.target_tokens, 10);
  EXPECT_DOUBLE_EQ(plan.Normaliser(), 3 * 2 * 1.0 + 4 * 3.0);
  EXPECT_EQ(plan.targets_by_language, (std::vector<int64_t>{6, 4}));
  // inverse_frequency: N / (L * n_l), sklearn's "balanced".
  spec::LanguageWeights inverse;
  inverse.mode = spec::LanguageWeights::Mode::kInverseFrequency;
  const std::vector<double> iw = ResolveLanguageWeights(inverse, d);
  EXPECT_DOUBLE_EQ(iw[0], 4.0 / (2 * 3));
  EXPECT_DOUBLE_EQ(iw[1], 4.0 / (2 * 1));
  EXPECT_TRUE(ResolveLanguageWeights(spec::LanguageWeights(), d).empty());
}

}  // namespace
}  // namespace polytune::engine
