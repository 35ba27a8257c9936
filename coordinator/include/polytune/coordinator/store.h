// Durable control-plane state: jobs with their events, workers, metrics and checkpoint
// records. SqliteStore keeps it in one SQLite database (WAL) so a coordinator restart
// reloads everything; InMemoryStore is the fake for tests.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/common/metrics_record.h"
#include "polytune/coordinator/domain.h"

namespace polytune::coordinator {

struct CheckpointRecord {
  std::string job_id;
  int64_t step = 0;
  std::string sha256;  // of the archive, verified before recording
  int64_t size_bytes = 0;
  std::string artifact;  // content-addressed path under the artifact root
};

struct StoredMetricsRecord {
  int64_t seq = 0;      // store-wide increasing: the cursor of GetMetrics
  int32_t attempt = 0;  // the job placement that produced it
  MetricsRecord record;
};

struct LogLine {
  int64_t seq = 0;  // store-wide increasing
  int32_t rank = 0;
  std::string text;
};

class Store {
 public:
  virtual ~Store() = default;
  // Inserts or replaces a job with all its events, atomically.
  virtual absl::Status PutJob(const Job& job) = 0;
  virtual absl::StatusOr<std::optional<Job>> GetJob(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<Job>> ListJobs() = 0;  // in submission order
  virtual absl::StatusOr<int64_t> NextJobSequence() = 0;
  virtual absl::Status PutWorker(const Worker& worker) = 0;
  virtual absl::StatusOr<std::vector<Worker>> ListWorkers() = 0;
  // Appends records of the job's placement `attempt`. A record whose kind (step or eval) and
  // step the job already has is skipped: a batch delivered twice (the reply to the first try
  // was lost) is stored once.
  virtual absl::Status AppendMetrics(const std::string& job_id, int32_t attempt,
                                     const std::vector<MetricsRecord>& records) = 0;
  // Deletes the job's records past `step` (a restart resumes from a checkpoint at `step`, and
  // the records of the steps it repeats would otherwise appear twice).
  virtual absl::Status DropMetricsAfter(const std::string& job_id, int64_t step) = 0;
  // At most `limit` records of the job with seq > after_seq, oldest first. A stored record
  // that cannot be read back is DATA_LOSS naming the row.
  virtual absl::StatusOr<std::vector<StoredMetricsRecord>> Metrics(const std::string& job_id, int64_t after_seq,
                                                                   int64_t limit) = 0;
  virtual absl::Status AppendLogs(const std::string& job_id, int32_t rank, const std::vector<std::string>& lines) = 0;
  // At most `limit` lines of the job with seq > after_seq, oldest first.
  virtual absl::StatusOr<std::vector<LogLine>> Logs(const std::string& job_id, int64_t after_seq, int64_t limit) = 0;
  // Principals that may download an artifact (its uploader; a job owner for its checkpoints).
  virtual absl::Status AddArtifactOwner(const std::string& sha256, const std::string& owner) = 0;
  virtual absl::StatusOr<std::vector<std::string>> ArtifactOwners(const std::string& sha256) = 0;
  virtual absl::Status PutCheckpoint(const CheckpointRecord& record) = 0;
  virtual absl::StatusOr<std::vector<CheckpointRecord>> Checkpoints(const std::string& job_id) = 0;  // by step
};

std::unique_ptr<Store> MakeInMemoryStore();
// Opens (creating if needed) `path`; errors name the file and what to do.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace polytune::coordinator
