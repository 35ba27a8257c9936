// Learning-rate schedules with linear warmup, as transformers' get_*_schedule_with_warmup:
// the rate used by the optimizer step that follows `step` completed steps.
#pragma once

#include <cstdint>

#include "polytune/engine/train_config.h"

namespace polytune::engine {

double LearningRateAt(LrSchedule schedule, double base_lr, int64_t step, int64_t warmup_steps, int64_t total_steps);

}  // namespace polytune::engine
