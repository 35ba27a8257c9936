#include <gtest/gtest.h>

#include <cmath>

#include "polytune/engine/adamw.h"
#include "polytune/engine/lr_schedule.h"

namespace polytune::engine {
namespace {

TEST(AdamW, MatchesClosedFormOverTwoSteps) {
  at::Tensor p = at::tensor({1.0f, -2.0f}).set_requires_grad(true);
  AdamW opt({p}, AdamWOptions{0.9, 0.999, 1e-8, 0.1});
  const double lr = 0.01;
  double x[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
  const double grads[2][2] = {{0.5, -1.0}, {0.25, 3.0}};
  for (int t = 1; t <= 2; ++t) {
    p.mutable_grad() = at::tensor({static_cast<float>(grads[t - 1][0]), static_cast<float>(grads[t - 1][1])});
    opt.Step(lr);
    for (int i = 0; i < 2; ++i) {
      const double g = grads[t - 1][i];
      x[i] *= 1 - lr * 0.1;
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      const double mhat = m[i] / (1 - std::pow(0.9, t)), vhat = v[i] / (1 - std::pow(0.999, t));
      x[i] -= lr * mhat / (std::sqrt(vhat) + 1e-8);
      EXPECT_NEAR(p[i].item<double>(), x[i], 1e-6) << "step " << t << " index " << i;
    }
  }
  EXPECT_EQ(opt.step_count(), 2);
}

TEST(LrSchedule, WarmupThenDecayLikeTransformers) {
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kCosine, 1.0, 0, 10, 110), 0.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kCosine, 1.0, 5, 10, 110), 0.5);
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kCosine, 1.0, 10, 10, 110), 1.0);
  EXPECT_NEAR(LearningRateAt(LrSchedule::kCosine, 1.0, 60, 10, 110), 0.5, 1e-12);
  EXPECT_NEAR(LearningRateAt(LrSchedule::kCosine, 1.0, 110, 10, 110), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kLinear, 2.0, 60, 10, 110), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kConstant, 2.0, 100, 10, 110), 2.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kConstant, 2.0, 0, 0, 110), 2.0);
}

}  // namespace
}  // namespace polytune::engine
