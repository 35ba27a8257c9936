#include "polytune/spec/early_stopping.h"

#include <cmath>

namespace polytune::spec {

std::optional<double> EarlyStoppingValue(const EarlyStopping& config, const EvalFigures& f) {
  const std::string& m = config.metric;
  if (m == "eval_loss") return f.loss;
  if (m == "eval_ppl") return f.ppl;
  if (m == "eval_accuracy") return f.accuracy;
  if (f.generated > 0) {
    if (m == "chrf") return f.chrf;
    if (m == "chrfpp") return f.chrfpp;
    if (m == "exact_match") return f.exact_match;
  }
  if (f.labelled > 0) {
    if (m == "label_accuracy") return f.label_accuracy;
    if (m == "macro_f1") return f.macro_f1;
  }
  return std::nullopt;
}

namespace {

bool Improves(const EarlyStopping& c, double value, const std::optional<double>& best) {
  if (!std::isfinite(value)) return false;
  if (!best) return true;
  return c.mode == StopMode::kMin ? value < *best - c.min_delta : value > *best + c.min_delta;
}

}  // namespace

bool EarlyStoppingTracker::Observe(int64_t step, const EvalFigures& overall) {
  if (step <= 0) return false;
  const std::optional<double> v = EarlyStoppingValue(config_, overall);
  if (!v) return false;  // an evaluation without the metric neither improves nor counts
  if (Improves(config_, *v, best_value_)) {
    best_value_ = *v;
    best_step_ = step;
    evals_without_improvement_ = 0;
    return true;
  }
  ++evals_without_improvement_;
  return false;
}

nlohmann::json EarlyStoppingTracker::ToJson() const {
  nlohmann::json j = {{"evals_without_improvement", evals_without_improvement_}};
  if (best_step_) {
    j["best_step"] = *best_step_;
    j["best_value"] = *best_value_;
  }
  return j;
}

void EarlyStoppingTracker::RestoreFrom(const nlohmann::json& j) {
  evals_without_improvement_ = j.value("evals_without_improvement", int64_t{0});
  if (j.contains("best_step") && j.contains("best_value")) {
    best_step_ = j.at("best_step").get<int64_t>();
    best_value_ = j.at("best_value").get<double>();
  }
}

EarlyStopping BestCriterion(const JobSpec& spec) { return spec.training.early_stopping.value_or(EarlyStopping{}); }

std::optional<int64_t> BestCheckpointStep(const EarlyStopping& criterion, const std::vector<EvalMetrics>& evals,
                                          const std::set<int64_t>& checkpoint_steps) {
  std::optional<double> best;
  std::optional<int64_t> step;
  for (const auto& e : evals) {
    if (e.step <= 0 || !checkpoint_steps.count(e.step)) continue;
    const auto v = EarlyStoppingValue(criterion, e.overall);
    if (v && Improves(criterion, *v, best)) {
      best = *v;
      step = e.step;
    }
  }
  return step;
}

}  // namespace polytune::spec
