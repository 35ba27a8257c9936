#include "polytune/coordinator/best_checkpoint.h"

#include <set>

#include "polytune/common/status_macros.h"
#include "polytune/spec/early_stopping.h"

namespace polytune::coordinator {

absl::StatusOr<std::optional<int64_t>> FindBestCheckpoint(Store& store, const Job& job) {
  ASSIGN_OR_RETURN(std::vector<CheckpointRecord> checkpoints, store.Checkpoints(job.id));
  if (checkpoints.empty()) return std::optional<int64_t>();
  std::set<int64_t> steps;
  for (const auto& c : checkpoints) steps.insert(c.step);
  // The stored spec is canonical YAML the coordinator itself wrote, so it parses.
  ASSIGN_OR_RETURN(spec::JobSpec spec, spec::ParseJobSpec(job.spec_yaml, job.id, "", spec::SpecUse::kSubmission));
  std::vector<EvalMetrics> evals;
  constexpr int64_t kPage = 1000;
  for (int64_t after = 0;;) {
    ASSIGN_OR_RETURN(std::vector<StoredMetricsRecord> page, store.Metrics(job.id, after, kPage));
    for (const auto& r : page)
      if (const auto* e = std::get_if<EvalMetrics>(&r.record.value)) evals.push_back(*e);
    if (static_cast<int64_t>(page.size()) < kPage) break;
    after = page.back().seq;
  }
  return spec::BestCheckpointStep(spec::BestCriterion(spec), evals, steps);
}

}  // namespace polytune::coordinator
