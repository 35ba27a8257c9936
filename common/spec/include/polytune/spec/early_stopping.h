// Early stopping and the "best" checkpoint, decided from evaluation records alone, so the
// trainer (which stops) and the coordinator (which names `best` for download) agree.
//
// Evaluations at step 0 (the untrained model, before any checkpoint) are not candidates. An
// evaluation improves when it beats the best so far by more than min_delta (the first one
// always does); `patience` evaluations in a row that do not improve stop the run.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <vector>

#include "nlohmann/json.hpp"
#include "polytune/common/metrics_record.h"
#include "polytune/spec/job_spec.h"

namespace polytune::spec {

// The watched value of an evaluation; nullopt when the evaluation lacks it (generation
// metrics at an evaluation without generation).
std::optional<double> EarlyStoppingValue(const EarlyStopping& config, const EvalFigures& overall);

class EarlyStoppingTracker {
 public:
  explicit EarlyStoppingTracker(EarlyStopping config) : config_(std::move(config)) {}
  // Feeds the evaluation at `step`; true when it is the new best.
  bool Observe(int64_t step, const EvalFigures& overall);
  bool ShouldStop() const { return evals_without_improvement_ >= config_.patience; }
  std::optional<int64_t> best_step() const { return best_step_; }
  std::optional<double> best_value() const { return best_value_; }
  int64_t evals_without_improvement() const { return evals_without_improvement_; }

  // Kept in checkpoints so a resumed run stops where the uninterrupted one would.
  nlohmann::json ToJson() const;
  void RestoreFrom(const nlohmann::json& j);

 private:
  EarlyStopping config_;
  std::optional<double> best_value_;
  std::optional<int64_t> best_step_;
  int64_t evals_without_improvement_ = 0;
};

// The criterion of `spec`: its early_stopping, else the lowest eval loss.
EarlyStopping BestCriterion(const JobSpec& spec);

// The step of the best evaluation that has a checkpoint; nullopt when none does.
std::optional<int64_t> BestCheckpointStep(const EarlyStopping& criterion, const std::vector<EvalMetrics>& evals,
                                          const std::set<int64_t>& checkpoint_steps);

}  // namespace polytune::spec
