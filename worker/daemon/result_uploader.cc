#include "result_uploader.h"

#include <chrono>
#include <filesystem>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "polytune/common/bundle.h"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"
#include "polytune/coordinator/grpc_config.h"

namespace polytune::worker {
namespace fs = std::filesystem;
using coordinator::ContextWithDeadline;

ResultUploader::ResultUploader(v1::WorkerService::Stub* stub) : stub_(stub), thread_([this] { Loop(); }) {}

ResultUploader::~ResultUploader() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void ResultUploader::Track(const std::string& key, const std::string& job_id, const std::string& out_dir) {
  std::lock_guard<std::mutex> l(mu_);
  targets_[key] = Target{job_id, out_dir};
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
    for (const auto& [k, t] : targets_)
      if (!t.finished) keys.push_back(k);
    for (const auto& k : keys) {
      auto it = targets_.find(k);
      if (stop_ || it == targets_.end()) continue;
      // Work on a copy without the lock; write the progress back unless the key was forgotten
      // (or replaced) meanwhile.
      Target work = it->second;
      const bool final_pass = work.finish_requested;
      l.unlock();
      SyncOnce(work);
      l.lock();
      it = targets_.find(k);
      if (it == targets_.end() || it->second.job_id != work.job_id || it->second.out_dir != work.out_dir) continue;
      it->second.metrics_sent = work.metrics_sent;
      it->second.uploaded = work.uploaded;
      if (final_pass) it->second.finished = true;
    }
  }
}

void ResultUploader::SyncOnce(Target& t) {
  auto text = ReadFileToString(t.out_dir + "/metrics.jsonl");
  if (text.ok()) {
    std::vector<std::string> lines = absl::StrSplit(*text, '\n');
    if (!lines.empty()) lines.pop_back();  // text after the last newline is incomplete
    if (lines.size() < t.metrics_sent) t.metrics_sent = 0;  // log rewritten on resume
    if (lines.size() > t.metrics_sent) {
      v1::ReportMetricsRequest req;
      req.set_job_id(t.job_id);
      for (size_t i = t.metrics_sent; i < lines.size(); ++i) req.add_metrics_json(lines[i]);
      v1::ReportMetricsResponse resp;
      auto ctx = ContextWithDeadline(10);
      if (stub_->ReportMetrics(ctx.get(), req, &resp).ok()) t.metrics_sent = lines.size();
    }
  }
  // Checkpoints: committed folders only (staging folders start with ".tmp-").
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(t.out_dir + "/checkpoints", ec)) {
    const std::string name = e.path().filename().string();
    int64_t step;
    if (name.rfind("step-", 0) != 0 || !absl::SimpleAtoi(name.substr(5), &step) || t.uploaded.count(name)) continue;
    if (!fs::exists(e.path() / "trainer_state.json")) continue;
    auto bundle = PackDirectory(e.path().string());
    if (!bundle.ok()) continue;
    const std::string sha = Sha256Hex(*bundle);
    auto ctx = ContextWithDeadline(600);
    v1::UploadCheckpointResponse resp;
    auto writer = stub_->UploadCheckpoint(ctx.get(), &resp);
    bool ok = true;
    for (size_t pos = 0; pos < bundle->size() && ok; pos += coordinator::kMaxChunkBytes) {
      v1::UploadCheckpointChunk c;
      if (pos == 0) {
        c.set_job_id(t.job_id);
        c.set_step(step);
        c.set_sha256(sha);
      }
      c.set_data(bundle->substr(pos, coordinator::kMaxChunkBytes));
      ok = writer->Write(c);
    }
    writer->WritesDone();
    grpc::Status st = writer->Finish();
    if (st.ok()) t.uploaded.insert(name);
    else std::fprintf(stderr, "polytune-worker: checkpoint upload %s failed: %s\n", name.c_str(), st.error_message().c_str());
  }
}

}  // namespace polytune::worker
