// The coordinator's Prometheus metrics (docs/metrics.md): cluster families with no job label,
// and per-job training families exported only while a job is scheduled or running and for
// `job_grace_micros` after it ends, then dropped, so series never pile up.
//
// It observes JobManager (JobObserver), the typed metrics records workers report, checkpoint
// uploads and store writes (TimedStore). Values that describe the present (jobs by state,
// workers, devices, per-job series) are computed when Prometheus scrapes.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "polytune/common/clock.h"
#include "polytune/common/metrics_record.h"
#include "polytune/coordinator/job_manager.h"
#include "polytune/coordinator/store.h"

namespace polytune::coordinator {

struct CoordinatorMetricsOptions {
  int64_t job_grace_micros = 60'000'000;  // per-job series outlive their job by this much
};

class CoordinatorMetrics : public JobObserver, public prometheus::Collectable {
 public:
  CoordinatorMetrics(const Clock* clock, CoordinatorMetricsOptions options = {});

  // Where scrape-time cluster figures come from (JobManager::Workers and FreeDevices).
  void SetClusterSource(std::function<std::vector<Worker>()> workers,
                        std::function<std::map<std::string, int32_t>()> free_devices);

  // The registry of counters and histograms (also where gRPC metrics are registered).
  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  // JobObserver
  void OnRecovered(const std::vector<Job>& jobs) override;
  void OnSubmitted(const Job& job) override;
  void OnTransition(const Job& job, JobState from) override;
  void OnWorkerLost(const std::string& worker_id) override;
  void OnScheduleCycle(int64_t steady_micros) override;

  void OnMetricsRecords(const std::string& job_id, const std::vector<MetricsRecord>& records);
  void OnCheckpointUpload(bool verified, int64_t bytes);
  void ObserveStoreTransaction(double seconds);

  // prometheus::Collectable: the scrape-time families.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct JobSeries {
    std::string name, model;
    JobState state = JobState::kPending;
    int64_t ended_micros = 0;  // when it reached a terminal state
    std::optional<StepMetrics> step;
    double tokens_total = 0;
    std::map<std::string, EvalFigures> eval;        // by language
    std::map<std::string, EvalFigures> generation;  // the last evaluation with generation, by language
  };
  void PruneLocked(int64_t now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ExportedLocked(const JobSeries& s, int64_t now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* clock_;
  CoordinatorMetricsOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter& submitted_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Histogram& queue_wait_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Histogram& schedule_cycle_;
  prometheus::Counter& workers_lost_;
  prometheus::Family<prometheus::Counter>& uploads_;
  prometheus::Counter& upload_bytes_;
  prometheus::Histogram& store_txn_;

  std::function<std::vector<Worker>()> workers_source_;
  std::function<std::map<std::string, int32_t>()> free_source_;

  mutable absl::Mutex mu_;
  std::map<JobState, int64_t> jobs_by_state_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> queue_wait_observed_ ABSL_GUARDED_BY(mu_);  // jobs whose first RUNNING was timed
  mutable std::map<std::string, JobSeries> series_ ABSL_GUARDED_BY(mu_);
};

// A Store whose writes are timed into polytune_store_transaction_duration_seconds.
std::unique_ptr<Store> MakeTimedStore(Store* inner, CoordinatorMetrics* metrics);

}  // namespace polytune::coordinator
