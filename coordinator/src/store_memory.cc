#include <algorithm>
#include <map>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "polytune/coordinator/store.h"

namespace polytune::coordinator {
namespace {

class InMemoryStore : public Store {
 public:
  absl::Status PutJob(const Job& job) override {
    absl::MutexLock l(&mu_);
    jobs_[job.id] = job;
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<Job>> GetJob(const std::string& id) override {
    absl::MutexLock l(&mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return std::optional<Job>();
    return std::optional<Job>(it->second);
  }
  absl::StatusOr<std::vector<Job>> ListJobs() override {
    absl::MutexLock l(&mu_);
    std::vector<Job> out;
    for (const auto& [id, j] : jobs_) out.push_back(j);
    std::sort(out.begin(), out.end(), [](const Job& a, const Job& b) { return a.sequence < b.sequence; });
    return out;
  }
  absl::StatusOr<int64_t> NextJobSequence() override {
    absl::MutexLock l(&mu_);
    return ++sequence_;
  }
  absl::Status PutWorker(const Worker& w) override {
    absl::MutexLock l(&mu_);
    workers_[w.id] = w;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<Worker>> ListWorkers() override {
    absl::MutexLock l(&mu_);
    std::vector<Worker> out;
    for (const auto& [id, w] : workers_) out.push_back(w);
    return out;
  }
  absl::Status AppendMetrics(const std::string& job_id, int32_t attempt,
                             const std::vector<MetricsRecord>& records) override {
    absl::MutexLock l(&mu_);
    auto& stored = metrics_[job_id];
    for (const auto& r : records) {
      const bool seen = std::any_of(stored.begin(), stored.end(), [&](const StoredMetricsRecord& m) {
        return m.record.kind() == r.kind() && m.record.step() == r.step();
      });
      if (!seen) stored.push_back({++metrics_seq_, attempt, r});
    }
    return absl::OkStatus();
  }
  absl::Status DropMetricsAfter(const std::string& job_id, int64_t step) override {
    absl::MutexLock l(&mu_);
    auto& v = metrics_[job_id];
    v.erase(std::remove_if(v.begin(), v.end(), [&](const StoredMetricsRecord& m) { return m.record.step() > step; }),
            v.end());
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<StoredMetricsRecord>> Metrics(const std::string& job_id, int64_t after_seq,
                                                           int64_t limit) override {
    absl::MutexLock l(&mu_);
    std::vector<StoredMetricsRecord> out;
    for (const auto& m : metrics_[job_id])
      if (m.seq > after_seq && static_cast<int64_t>(out.size()) < limit) out.push_back(m);
    return out;
  }
  absl::Status AppendLogs(const std::string& job_id, int32_t rank, const std::vector<std::string>& lines) override {
    absl::MutexLock l(&mu_);
    for (const auto& t : lines) logs_[job_id].push_back({++log_seq_, rank, t});
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<LogLine>> Logs(const std::string& job_id, int64_t after_seq, int64_t limit) override {
    absl::MutexLock l(&mu_);
    std::vector<LogLine> out;
    for (const auto& line : logs_[job_id])
      if (line.seq > after_seq && static_cast<int64_t>(out.size()) < limit) out.push_back(line);
    return out;
  }
  absl::Status AddArtifactOwner(const std::string& sha256, const std::string& owner) override {
    absl::MutexLock l(&mu_);
    artifact_owners_[sha256].insert(owner);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<std::string>> ArtifactOwners(const std::string& sha256) override {
    absl::MutexLock l(&mu_);
    auto it = artifact_owners_.find(sha256);
    if (it == artifact_owners_.end()) return std::vector<std::string>{};
    return std::vector<std::string>(it->second.begin(), it->second.end());
  }
  absl::Status PutCheckpoint(const CheckpointRecord& r) override {
    absl::MutexLock l(&mu_);
    auto& v = checkpoints_[r.job_id];
    v.erase(std::remove_if(v.begin(), v.end(), [&](const CheckpointRecord& c) { return c.step == r.step; }), v.end());
    v.push_back(r);
    std::sort(v.begin(), v.end(), [](const CheckpointRecord& a, const CheckpointRecord& b) { return a.step < b.step; });
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<CheckpointRecord>> Checkpoints(const std::string& job_id) override {
    absl::MutexLock l(&mu_);
    return checkpoints_[job_id];
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Worker> workers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<StoredMetricsRecord>> metrics_ ABSL_GUARDED_BY(mu_);
  int64_t metrics_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::vector<LogLine>> logs_ ABSL_GUARDED_BY(mu_);
  int64_t log_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::vector<CheckpointRecord>> checkpoints_ ABSL_GUARDED_BY(mu_);
  int64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::set<std::string>> artifact_owners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<Store> MakeInMemoryStore() { return std::make_unique<InMemoryStore>(); }

}  // namespace polytune::coordinator
