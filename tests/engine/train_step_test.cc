// The named pieces of a training step, each on its own.
#include "polytune/engine/train_step.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "polytune/engine/metrics_log.h"

namespace polytune::engine {
namespace {

TokenDataset Dataset(const std::vector<int64_t>& lengths) {
  TokenDataset d;
  d.languages = {"und"};
  for (int64_t n : lengths) {
    TokenExample ex;
    for (int64_t i = 0; i < n; ++i) ex.input_ids.push_back(i + 1);
    ex.labels = ex.input_ids;
    d.examples.push_back(ex);
  }
  return d;
}

TEST(TrainStep, PlanCoversTheGlobalBatchAndNormalisesByAllItsTargets) {
  const TokenDataset d = Dataset({3, 5, 7, 9, 11, 13, 2, 4});
  BatchSchedule schedule(8, 8, 1);
  const StepPlan plan = PlanStep(d, schedule, 0, /*micro_batch_size=*/2, /*grad_accum_steps=*/2, /*world_size=*/2);
  EXPECT_EQ(plan.global_batch, 8);
  EXPECT_EQ(plan.per_rank, 4);
  int64_t tokens = 0, targets = 0;
  for (const auto& ex : d.examples) {
    tokens += static_cast<int64_t>(ex.input_ids.size());
    targets += ex.TargetCount();
  }
  EXPECT_EQ(plan.tokens, tokens) << "one epoch is one step here: every example once";
  EXPECT_EQ(plan.target_tokens, targets);
  EXPECT_DOUBLE_EQ(plan.Normaliser(), static_cast<double>(targets));
  // Ranks take contiguous shares, micro-batches split each share.
  EXPECT_EQ(MicroBatchPositions(plan, 0, 0), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(MicroBatchPositions(plan, 0, 1), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(MicroBatchPositions(plan, 1, 1), (std::vector<int64_t>{6, 7}));
  const StepPlan next = PlanStep(d, schedule, 3, 2, 2, 2);
  EXPECT_EQ(MicroBatchPositions(next, 1, 0), (std::vector<int64_t>{28, 29}));
  EXPECT_GE(StepPlan{}.Normaliser(), 1.0) << "an all-masked step never divides by zero";
}

TEST(TrainStep, ClipGradNormMatchesTorchsFormula) {
  at::Tensor a = at::zeros({2}).set_requires_grad(true), b = at::zeros({1}).set_requires_grad(true);
  a.mutable_grad() = at::tensor({3.0f, 0.0f});
  b.mutable_grad() = at::tensor({4.0f});
  const double norm = ClipGradNorm({a, b}, 1.0);
  EXPECT_DOUBLE_EQ(norm, 5.0);
  const double coef = 1.0 / (5.0 + 1e-6);
  EXPECT_NEAR(a.grad()[0].item<double>(), 3.0 * coef, 1e-6);
  EXPECT_NEAR(b.grad()[0].item<double>(), 4.0 * coef, 1e-6);
  // Under the limit, or with clipping off, gradients are untouched.
  a.mutable_grad() = at::tensor({0.3f, 0.4f});
  EXPECT_NEAR(ClipGradNorm({a}, 1.0), 0.5, 1e-7);
  EXPECT_FLOAT_EQ(a.grad()[1].item<float>(), 0.4f);
  a.mutable_grad() = at::tensor({30.0f, 40.0f});
  EXPECT_NEAR(ClipGradNorm({a}, 0.0), 50.0, 1e-5);
  EXPECT_FLOAT_EQ(a.grad()[0].item<float>(), 30.0f);
}

TEST(TrainStep, FlatGradientsRoundTripWithExtras) {
  at::Tensor a = at::zeros({2, 2}).set_requires_grad(true), b = at::zeros({3}).set_requires_grad(true);
  a.mutable_grad() = at::arange(4, at::kFloat).view({2, 2});
  FlatGradients flat({a, b});  // b has no gradient yet: packed as zeros
  at::Tensor buf = flat.Pack({7.5});
  ASSERT_EQ(buf.numel(), 8);
  buf.mul_(2);
  const std::vector<double> extras = flat.Unpack(buf, 1);
  EXPECT_DOUBLE_EQ(extras[0], 15.0);
  EXPECT_FLOAT_EQ(a.grad()[1][1].item<float>(), 6.0f);
  EXPECT_FLOAT_EQ(b.grad()[2].item<float>(), 0.0f);
}

TEST(MetricsLog, ResumeKeepsRecordsUpToTheStepAndDropsATornLine) {
  const std::string dir = std::filesystem::temp_directory_path() / "polytune-metrics-log-test";
  std::filesystem::create_directories(dir);
  MetricsLog log(dir + "/metrics.jsonl");
  ASSERT_TRUE(log.Reset().ok());
  for (int64_t s = 1; s <= 4; ++s) {
    StepMetrics m;
    m.step = s;
    ASSERT_TRUE(log.Append({m}).ok());
  }
  std::ofstream(dir + "/metrics.jsonl", std::ios::app) << R"({"step":5,"epo)";  // died mid-write
  ASSERT_TRUE(log.TruncateAfter(2).ok());
  std::ifstream in(dir + "/metrics.jsonl");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  std::ofstream(dir + "/metrics.jsonl", std::ios::app) << "garbage\n";
  absl::Status st = log.TruncateAfter(2);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("metrics.jsonl:3"), std::string::npos) << st;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace polytune::engine
