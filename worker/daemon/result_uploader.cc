#include "result_uploader.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "polytune/common/bundle.h"
#include "polytune/common/file_util.h"
#include "polytune/common/metrics_record.h"
#include "polytune/common/sha256.h"

namespace polytune::worker {
namespace fs = std::filesystem;

namespace {
// The coordinator will never take these (a superseded placement, a job no longer placed on
// this worker): retrying would only spin.
constexpr size_t kMetricsPerReport = 1000;

bool Refused(const absl::Status& st) {
  return st.code() == absl::StatusCode::kFailedPrecondition || st.code() == absl::StatusCode::kPermissionDenied;
}
}  // namespace

ResultUploader::ResultUploader(CoordinatorClient* client, WorkerTelemetry* telemetry)
    : client_(client), telemetry_(telemetry), thread_([this] { Loop(); }) {}

ResultUploader::~ResultUploader() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void ResultUploader::Track(const std::string& key, const std::string& job_id, int32_t rank, int32_t attempt,
                           const std::string& rank_dir, bool results) {
  std::lock_guard<std::mutex> l(mu_);
  Target t;
  t.job_id = job_id;
  t.rank = rank;
  t.attempt = attempt;
  t.rank_dir = rank_dir;
  t.results = results;
  targets_[key] = t;
}

void ResultUploader::Finish(const std::string& key) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = targets_.find(key);
    if (it == targets_.end()) return;
    it->second.finish_requested = true;
  }
  wake_.notify_all();
}

bool ResultUploader::Finished(const std::string& key) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = targets_.find(key);
  return it == targets_.end() || it->second.finished;
}

void ResultUploader::Forget(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  targets_.erase(key);
}

void ResultUploader::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    wake_.wait_for(l, std::chrono::milliseconds(300));
    std::vector<std::string> keys;
    const auto now = std::chrono::steady_clock::now();
    for (const auto& [k, t] : targets_)
      if (!t.finished && t.next_try <= now) keys.push_back(k);
    for (const auto& k : keys) {
      auto it = targets_.find(k);
      if (stop_ || it == targets_.end()) continue;
      // Work on a copy without the lock; write the progress back unless the key was forgotten
      // (or replaced) meanwhile.
      Target work = it->second;
      const bool final_pass = work.finish_requested;
      l.unlock();
      const Pass pass = SyncOnce(work, final_pass);
      l.lock();
      it = targets_.find(k);
      if (it == targets_.end() || it->second.job_id != work.job_id || it->second.rank_dir != work.rank_dir) continue;
      it->second.log_sent = work.log_sent;
      it->second.metrics_sent = work.metrics_sent;
      it->second.uploaded = work.uploaded;
      if (pass != Pass::kFailed) {
        it->second.failures = 0;
        // An exited rank is finished only once all it wrote is delivered: the job's success
        // waits for its final checkpoint, however long the coordinator is away.
        if (final_pass && pass == Pass::kDelivered) it->second.finished = true;
      } else {
        const int f = std::min(++it->second.failures, 7);
        it->second.next_try = std::chrono::steady_clock::now() +
                              std::min(std::chrono::milliseconds(300 << f), std::chrono::milliseconds(30'000));
      }
    }
    int64_t backlog = 0;
    for (const auto& [k, t] : targets_)
      if (!t.finished) backlog += Backlog(t);
    telemetry_->SetUploadQueueBytes(backlog);
  }
}

int64_t ResultUploader::Backlog(const Target& t) {
  std::error_code ec;
  int64_t bytes = 0;
  const auto log_size = fs::file_size(t.rank_dir + "/rank.log", ec);
  if (!ec && log_size > t.log_sent) bytes += static_cast<int64_t>(log_size - t.log_sent);
  if (!t.results) return bytes;
  for (const auto& e : fs::directory_iterator(t.rank_dir + "/out/checkpoints", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) != 0 || t.uploaded.count(name)) continue;
    for (const auto& f : fs::directory_iterator(e.path(), ec))
      if (f.is_regular_file(ec)) bytes += static_cast<int64_t>(f.file_size(ec));
  }
  return bytes;
}

ResultUploader::Pass ResultUploader::SyncOnce(Target& t, bool final) {
  bool ok = SendLogLines(t, final);
  if (t.results) {
    ok = SendMetrics(t) && ok;
    ok = SendCheckpoints(t) && ok;
  }
  if (!ok) return Pass::kFailed;
  return Backlog(t) > 0 ? Pass::kMoreToSend : Pass::kDelivered;
}

bool ResultUploader::SendLogLines(Target& t, bool final) {
  std::ifstream in(t.rank_dir + "/rank.log", std::ios::binary);
  if (!in) return true;
  in.seekg(static_cast<std::streamoff>(t.log_sent));
  std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (final && !chunk.empty() && chunk.back() != '\n') chunk += '\n';  // the rank is gone: its last words
  const size_t end = chunk.rfind('\n');
  if (end == std::string::npos) return true;  // no complete line yet
  std::vector<std::string> lines;
  size_t consumed = 0;
  // Progress bars rewrite their line with '\r'; the last state of each line is what counts.
  for (absl::string_view line : absl::StrSplit(absl::string_view(chunk).substr(0, end), '\n')) {
    const size_t cr = line.rfind('\r', line.size() >= 1 && line.back() == '\r' ? line.size() - 2 : line.size());
    absl::string_view text = cr == absl::string_view::npos ? line : line.substr(cr + 1);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    lines.emplace_back(text);
    consumed += line.size() + 1;
    if (lines.size() >= 1000 || consumed >= (1u << 20)) break;  // the rest goes next pass
  }
  absl::Status st = client_->ReportLogs(t.job_id, t.rank, lines);
  if (!st.ok() && !Refused(st)) return false;
  // A line completed above for a finished rank counts its invented newline; never past the file.
  std::error_code ec;
  const auto size = fs::file_size(t.rank_dir + "/rank.log", ec);
  t.log_sent = ec ? t.log_sent + consumed : std::min<size_t>(t.log_sent + consumed, size);
  return true;
}

bool ResultUploader::SendMetrics(Target& t) {
  auto text = ReadFileToString(t.rank_dir + "/out/metrics.jsonl");
  if (!text.ok()) return true;
  std::vector<std::string> lines = absl::StrSplit(*text, '\n');
  if (!lines.empty()) lines.pop_back();                   // text after the last newline is incomplete
  if (lines.size() < t.metrics_sent) t.metrics_sent = 0;  // log rewritten on resume
  if (lines.size() <= t.metrics_sent) return true;
  // metrics.jsonl is the trainer's on-disk format: read here, at the edge, into typed records.
  std::vector<MetricsRecord> records;
  for (size_t i = t.metrics_sent; i < lines.size(); ++i) {
    auto r = MetricsRecordFromJson(lines[i]);
    if (!r.ok()) {
      std::fprintf(stderr, "polytune-worker: %s/out/metrics.jsonl:%zu skipped: %s\n", t.rank_dir.c_str(), i + 1,
                   std::string(r.status().message()).c_str());
      continue;
    }
    records.push_back(*r);
  }
  // In batches the coordinator accepts (it refuses a report of more than 2000 records whole).
  for (size_t begin = 0; begin < records.size(); begin += kMetricsPerReport) {
    std::vector<MetricsRecord> batch(records.begin() + begin,
                                     records.begin() + std::min(records.size(), begin + kMetricsPerReport));
    absl::Status st = client_->ReportMetrics(t.job_id, t.attempt, batch);
    // Refused ones are dropped (they will never be taken); the coordinator keeps each step once,
    // so resending batches that went through before a failure is harmless.
    if (!st.ok() && !Refused(st)) return false;
  }
  t.metrics_sent = lines.size();
  return true;
}

bool ResultUploader::SendCheckpoints(Target& t) {
  bool ok = true;
  // Committed folders only (staging folders start with ".tmp-").
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(t.rank_dir + "/out/checkpoints", ec)) {
    const std::string name = e.path().filename().string();
    int64_t step;
    if (name.rfind("step-", 0) != 0 || !absl::SimpleAtoi(name.substr(5), &step) || t.uploaded.count(name)) continue;
    if (!fs::exists(e.path() / "trainer_state.json")) continue;
    auto bundle = PackDirectory(e.path().string());
    if (!bundle.ok()) {
      ok = false;
      continue;
    }
    absl::Status st = client_->UploadCheckpoint(t.job_id, t.attempt, step, *bundle);
    if (st.ok()) {
      t.uploaded.insert(name);
    } else if (Refused(st)) {
      t.uploaded.insert(name);  // this placement was superseded: it will never be recorded
      std::fprintf(stderr, "polytune-worker: checkpoint %s not recorded: %s\n", name.c_str(),
                   std::string(st.message()).c_str());
    } else {
      ok = false;
      std::fprintf(stderr, "polytune-worker: checkpoint upload %s failed: %s; will retry\n", name.c_str(),
                   std::string(st.message()).c_str());
    }
  }
  PruneDeliveredCheckpoints(t);
  return ok;
}

void ResultUploader::PruneDeliveredCheckpoints(const Target& t) {
  // The coordinator holds every delivered checkpoint (a restart resumes from its copy), so the
  // rank folder keeps only the newest delivered one and those not yet delivered: the on-disk
  // queue never holds more than what an outage left unsent, plus one.
  int64_t newest = -1;
  for (const auto& name : t.uploaded) {
    int64_t step;
    if (absl::SimpleAtoi(name.substr(5), &step)) newest = std::max(newest, step);
  }
  std::error_code ec;
  for (const auto& name : t.uploaded) {
    int64_t step;
    if (absl::SimpleAtoi(name.substr(5), &step) && step < newest)
      fs::remove_all(fs::path(t.rank_dir) / "out" / "checkpoints" / name, ec);
  }
}

}  // namespace polytune::worker
