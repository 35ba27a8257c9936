#include "polytune/engine/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace polytune::engine {

double LearningRateAt(LrSchedule schedule, double base_lr, int64_t step, int64_t warmup_steps, int64_t total_steps) {
  if (step < warmup_steps)
    return base_lr * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  const double decay_steps = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = static_cast<double>(step - warmup_steps) / decay_steps;
  switch (schedule) {
    case LrSchedule::kConstant:
      return base_lr;
    case LrSchedule::kLinear:
      return base_lr * std::max(0.0, 1.0 - progress);
    case LrSchedule::kCosine:
      return base_lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  }
  return base_lr;
}

}  // namespace polytune::engine
