#include "polytune/coordinator/coordinator_metrics.h"

#include <chrono>
#include <cmath>

#include "polytune/telemetry/telemetry.h"

namespace polytune::coordinator {
namespace {

using prometheus::MetricType;
using telemetry::Labels;
using telemetry::ValueFamily;

// Seconds from a minute to a day: queue waits and job durations.
prometheus::Histogram::BucketBoundaries LongBuckets() {
  return {1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400};
}
// 100 us to 1 s: scheduling decisions and store transactions.
prometheus::Histogram::BucketBoundaries ShortBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
}

const char* OutcomeOf(JobState s) {
  switch (s) {
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    default:
      return "cancelled";
  }
}

int64_t FirstEventMicros(const Job& job, JobState state) {
  for (const auto& e : job.events)
    if (e.state == state) return e.time_micros;
  return job.submitted_micros;
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(const Clock* clock, CoordinatorMetricsOptions options)
    : clock_(clock),
      options_(options),
      registry_(std::make_shared<prometheus::Registry>()),
      submitted_(prometheus::BuildCounter()
                     .Name("polytune_jobs_submitted_total")
                     .Help("Jobs accepted by SubmitJob.")
                     .Register(*registry_)
                     .Add({})),
      finished_(prometheus::BuildCounter()
                    .Name("polytune_jobs_finished_total")
                    .Help("Jobs that ended, by outcome (succeeded, failed, cancelled).")
                    .Register(*registry_)),
      queue_wait_(prometheus::BuildHistogram()
                      .Name("polytune_job_queue_wait_seconds")
                      .Help("Time from submission to a job's first RUNNING, observed once per job.")
                      .Register(*registry_)
                      .Add({}, LongBuckets())),
      duration_(prometheus::BuildHistogram()
                    .Name("polytune_job_duration_seconds")
                    .Help("Time from submission to the end of a job, by outcome.")
                    .Register(*registry_)),
      schedule_cycle_(prometheus::BuildHistogram()
                          .Name("polytune_schedule_cycle_duration_seconds")
                          .Help("Time one scheduling decision takes.")
                          .Register(*registry_)
                          .Add({}, ShortBuckets())),
      workers_lost_(prometheus::BuildCounter()
                        .Name("polytune_workers_lost_total")
                        .Help("Workers declared lost after missing heartbeats.")
                        .Register(*registry_)
                        .Add({})),
      uploads_(prometheus::BuildCounter()
                   .Name("polytune_checkpoint_uploads_total")
                   .Help("Checkpoint uploads, by result (verified, rejected).")
                   .Register(*registry_)),
      upload_bytes_(prometheus::BuildCounter()
                        .Name("polytune_checkpoint_upload_bytes_total")
                        .Help("Bytes of verified checkpoint uploads.")
                        .Register(*registry_)
                        .Add({})),
      store_txn_(prometheus::BuildHistogram()
                     .Name("polytune_store_transaction_duration_seconds")
                     .Help("Time one durable write of the control-plane store takes.")
                     .Register(*registry_)
                     .Add({}, ShortBuckets())) {
  // Every outcome and result exists from the start, so rates and ratios have data at zero.
  for (const char* o : {"succeeded", "failed", "cancelled"}) {
    finished_.Add({{"outcome", o}});
    duration_.Add({{"outcome", o}}, LongBuckets());
  }
  for (const char* r : {"verified", "rejected"}) uploads_.Add({{"result", r}});
}

void CoordinatorMetrics::SetClusterSource(std::function<std::vector<Worker>()> workers,
                                          std::function<std::map<std::string, int32_t>()> free_devices) {
  workers_source_ = std::move(workers);
  free_source_ = std::move(free_devices);
}

void CoordinatorMetrics::OnRecovered(const std::vector<Job>& jobs) {
  absl::MutexLock l(&mu_);
  for (const auto& j : jobs) {
    ++jobs_by_state_[j.state];
    // A job already past its first RUNNING was timed before the restart.
    if (j.state != JobState::kPending && j.state != JobState::kScheduled) queue_wait_observed_.insert(j.id);
    if (IsTerminal(j.state)) continue;
    JobSeries& s = series_[j.id];
    s.name = j.name;
    s.model = j.model;
    s.state = j.state;
  }
}

void CoordinatorMetrics::OnSubmitted(const Job& job) {
  submitted_.Increment();
  absl::MutexLock l(&mu_);
  ++jobs_by_state_[job.state];
  JobSeries& s = series_[job.id];
  s.name = job.name;
  s.model = job.model;
  s.state = job.state;
}

void CoordinatorMetrics::OnTransition(const Job& job, JobState from) {
  const int64_t at = job.events.empty() ? clock_->NowMicros() : job.events.back().time_micros;
  absl::MutexLock l(&mu_);
  --jobs_by_state_[from];
  ++jobs_by_state_[job.state];
  if (job.state == JobState::kRunning && queue_wait_observed_.insert(job.id).second)
    queue_wait_.Observe(static_cast<double>(at - job.submitted_micros) / 1e6);
  JobSeries& s = series_[job.id];
  s.name = job.name;
  s.model = job.model;
  s.state = job.state;
  if (IsTerminal(job.state)) {
    s.ended_micros = clock_->NowMicros();
    finished_.Add({{"outcome", OutcomeOf(job.state)}}).Increment();
    duration_.Add({{"outcome", OutcomeOf(job.state)}}, LongBuckets())
        .Observe(static_cast<double>(at - FirstEventMicros(job, JobState::kPending)) / 1e6);
  }
}

void CoordinatorMetrics::OnWorkerLost(const std::string&) { workers_lost_.Increment(); }

void CoordinatorMetrics::OnScheduleCycle(int64_t steady_micros) {
  schedule_cycle_.Observe(static_cast<double>(steady_micros) / 1e6);
}

void CoordinatorMetrics::OnMetricsRecords(const std::string& job_id, const std::vector<MetricsRecord>& records) {
  absl::MutexLock l(&mu_);
  auto it = series_.find(job_id);
  if (it == series_.end()) return;  // ended and dropped: late records change nothing
  for (const auto& r : records) {
    if (const auto* s = std::get_if<StepMetrics>(&r.value)) {
      it->second.step = *s;
      it->second.tokens_total += static_cast<double>(s->tokens);
    } else if (const auto* e = std::get_if<EvalMetrics>(&r.value)) {
      for (const auto& [lang, f] : e->languages) {
        it->second.eval[lang] = f;
        if (f.has_generation()) it->second.generation[lang] = f;
      }
    }
  }
}

void CoordinatorMetrics::OnCheckpointUpload(bool verified, int64_t bytes) {
  uploads_.Add({{"result", verified ? "verified" : "rejected"}}).Increment();
  if (verified) upload_bytes_.Increment(static_cast<double>(bytes));
}

void CoordinatorMetrics::ObserveStoreTransaction(double seconds) { store_txn_.Observe(seconds); }

bool CoordinatorMetrics::ExportedLocked(const JobSeries& s, int64_t now) const {
  if (s.state == JobState::kScheduled || s.state == JobState::kRunning) return true;
  return IsTerminal(s.state) && now - s.ended_micros <= options_.job_grace_micros;
}

void CoordinatorMetrics::PruneLocked(int64_t now) const {
  for (auto it = series_.begin(); it != series_.end();) {
    if (IsTerminal(it->second.state) && now - it->second.ended_micros > options_.job_grace_micros) {
      it = series_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<prometheus::MetricFamily> CoordinatorMetrics::Collect() const {
  // Cluster figures first, without our lock (the sources take the JobManager's).
  const std::vector<Worker> workers = workers_source_ ? workers_source_() : std::vector<Worker>();
  const std::map<std::string, int32_t> free = free_source_ ? free_source_() : std::map<std::string, int32_t>();
  double alive = 0, lost = 0;
  std::map<std::string, std::pair<double, double>> devices;  // kind -> (free, used)
  for (const auto& w : workers) {
    (w.alive ? alive : lost) += 1;
    if (!w.alive) continue;
    const int32_t f = free.count(w.id) ? free.at(w.id) : 0;
    for (int32_t i = 0; i < w.slots(); ++i) {
      auto& d = devices[w.devices[i].kind];
      (i < f ? d.first : d.second) += 1;
    }
  }
  for (const char* kind : {"cpu", "cuda"}) devices.emplace(kind, std::make_pair(0.0, 0.0));
  std::vector<std::pair<Labels, double>> device_samples;
  for (const auto& [kind, fu] : devices) {
    device_samples.push_back({{{"kind", kind}, {"state", "free"}}, fu.first});
    device_samples.push_back({{{"kind", kind}, {"state", "used"}}, fu.second});
  }
  std::vector<prometheus::MetricFamily> out = {
      ValueFamily("polytune_workers", "Registered workers by state (alive, lost).", MetricType::Gauge,
                  {{{{"state", "alive"}}, alive}, {{{"state", "lost"}}, lost}}),
      ValueFamily("polytune_devices", "Devices of alive workers by kind and state (free, used).", MetricType::Gauge,
                  device_samples),
  };

  const int64_t now = clock_->NowMicros();
  absl::MutexLock l(&mu_);
  std::vector<std::pair<Labels, double>> by_state;
  for (const auto& [state, name] : std::vector<std::pair<JobState, const char*>>{
           {JobState::kPending, "pending"}, {JobState::kScheduled, "scheduled"}, {JobState::kRunning, "running"}}) {
    auto it = jobs_by_state_.find(state);
    by_state.push_back({{{"state", name}}, it == jobs_by_state_.end() ? 0.0 : static_cast<double>(it->second)});
  }
  out.push_back(
      ValueFamily("polytune_jobs", "Jobs by state (pending, scheduled, running).", MetricType::Gauge, by_state));

  PruneLocked(now);
  std::vector<std::pair<Labels, double>> info, step, max_steps, tokens, loss, lr, grad_norm, eta, eval_loss, eval_acc,
      eval_chrf;
  for (const auto& [id, s] : series_) {
    if (!ExportedLocked(s, now)) continue;
    const Labels job{{"job_id", id}};
    info.push_back({{{"job_id", id}, {"name", s.name}, {"model", s.model}}, 1.0});
    if (s.step) {
      const StepMetrics& m = *s.step;
      step.push_back({job, static_cast<double>(m.step)});
      max_steps.push_back({job, static_cast<double>(m.total_steps)});
      tokens.push_back({job, s.tokens_total});
      loss.push_back({job, m.loss});
      lr.push_back({job, m.lr});
      grad_norm.push_back({job, m.grad_norm});
      const double remaining =
          m.step > 0 && m.total_steps > m.step ? m.elapsed_seconds / m.step * (m.total_steps - m.step) : 0.0;
      eta.push_back({job, remaining});
    }
    for (const auto& [lang, f] : s.eval) {
      eval_loss.push_back({{{"job_id", id}, {"lang", lang}}, f.loss});
      eval_acc.push_back({{{"job_id", id}, {"lang", lang}}, f.accuracy});
    }
    for (const auto& [lang, f] : s.generation)
      if (f.generated > 0) eval_chrf.push_back({{{"job_id", id}, {"lang", lang}}, f.chrf});
  }
  out.push_back(ValueFamily("polytune_job_info", "A scheduled or running job (or one that just ended); always 1.",
                            MetricType::Gauge, info));
  out.push_back(ValueFamily("polytune_train_step", "Optimizer steps completed.", MetricType::Gauge, step));
  out.push_back(
      ValueFamily("polytune_train_max_steps", "Optimizer steps of the whole run.", MetricType::Gauge, max_steps));
  out.push_back(ValueFamily("polytune_train_tokens_total", "Tokens trained on (tokens/s is its rate).",
                            MetricType::Counter, tokens));
  out.push_back(ValueFamily("polytune_train_loss", "Training loss of the last step.", MetricType::Gauge, loss));
  out.push_back(ValueFamily("polytune_train_learning_rate", "Learning rate of the last step.", MetricType::Gauge, lr));
  out.push_back(ValueFamily("polytune_train_grad_norm", "Gradient global norm of the last step, before clipping.",
                            MetricType::Gauge, grad_norm));
  out.push_back(ValueFamily("polytune_train_eta_seconds", "Estimated time to the last step.", MetricType::Gauge, eta));
  out.push_back(
      ValueFamily("polytune_eval_loss", "Loss of the last evaluation, per language.", MetricType::Gauge, eval_loss));
  out.push_back(ValueFamily("polytune_eval_accuracy", "Next-token accuracy of the last evaluation, per language (0-1).",
                            MetricType::Gauge, eval_acc));
  out.push_back(
      ValueFamily("polytune_eval_chrf",
                  "chrF2 (0-100) of the last evaluation by generation (training.eval_generate), per language.",
                  MetricType::Gauge, eval_chrf));
  return out;
}

namespace {

class TimedStore : public Store {
 public:
  TimedStore(Store* inner, CoordinatorMetrics* metrics) : inner_(inner), metrics_(metrics) {}

  absl::Status PutJob(const Job& job) override {
    return Time([&] { return inner_->PutJob(job); });
  }
  absl::StatusOr<std::optional<Job>> GetJob(const std::string& id) override { return inner_->GetJob(id); }
  absl::StatusOr<std::vector<Job>> ListJobs() override { return inner_->ListJobs(); }
  absl::StatusOr<int64_t> NextJobSequence() override {
    return Time([&] { return inner_->NextJobSequence(); });
  }
  absl::Status PutWorker(const Worker& worker) override {
    return Time([&] { return inner_->PutWorker(worker); });
  }
  absl::StatusOr<std::vector<Worker>> ListWorkers() override { return inner_->ListWorkers(); }
  absl::Status AppendMetrics(const std::string& job_id, int32_t attempt,
                             const std::vector<MetricsRecord>& records) override {
    return Time([&] { return inner_->AppendMetrics(job_id, attempt, records); });
  }
  absl::Status DropMetricsAfter(const std::string& job_id, int64_t step) override {
    return Time([&] { return inner_->DropMetricsAfter(job_id, step); });
  }
  absl::StatusOr<std::vector<StoredMetricsRecord>> Metrics(const std::string& job_id, int64_t after_seq,
                                                           int64_t limit) override {
    return inner_->Metrics(job_id, after_seq, limit);
  }
  absl::Status AppendLogs(const std::string& job_id, int32_t rank, const std::vector<std::string>& lines) override {
    return Time([&] { return inner_->AppendLogs(job_id, rank, lines); });
  }
  absl::StatusOr<std::vector<LogLine>> Logs(const std::string& job_id, int64_t after_seq, int64_t limit) override {
    return inner_->Logs(job_id, after_seq, limit);
  }
  absl::Status AddArtifactOwner(const std::string& sha256, const std::string& owner) override {
    return Time([&] { return inner_->AddArtifactOwner(sha256, owner); });
  }
  absl::StatusOr<std::vector<std::string>> ArtifactOwners(const std::string& sha256) override {
    return inner_->ArtifactOwners(sha256);
  }
  absl::Status PutCheckpoint(const CheckpointRecord& record) override {
    return Time([&] { return inner_->PutCheckpoint(record); });
  }
  absl::StatusOr<std::vector<CheckpointRecord>> Checkpoints(const std::string& job_id) override {
    return inner_->Checkpoints(job_id);
  }

 private:
  template <typename F>
  auto Time(F write) -> decltype(write()) {
    const auto start = std::chrono::steady_clock::now();
    auto result = write();
    metrics_->ObserveStoreTransaction(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return result;
  }

  Store* inner_;
  CoordinatorMetrics* metrics_;
};

}  // namespace

std::unique_ptr<Store> MakeTimedStore(Store* inner, CoordinatorMetrics* metrics) {
  return std::make_unique<TimedStore>(inner, metrics);
}

}  // namespace polytune::coordinator
