#include "rank_supervisor.h"

#include <signal.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "polytune/common/bundle.h"
#include "polytune/common/exit_codes.h"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"
#include "polytune/spec/job_spec.h"

namespace polytune::worker {
namespace fs = std::filesystem;
namespace {

void Log(const std::string& msg) { std::fprintf(stderr, "polytune-worker: %s\n", msg.c_str()); }

}  // namespace

std::string LastErrorLine(const std::string& log_text) {
  std::vector<absl::string_view> lines = absl::StrSplit(log_text, '\n', absl::SkipEmpty());
  for (auto it = lines.rbegin(); it != lines.rend(); ++it)
    if (it->find("error") != absl::string_view::npos) return std::string(*it);
  return "";
}

RankSupervisor::RankSupervisor(SupervisorOptions options, SupervisorDeps deps)
    : o_(std::move(options)), d_(std::move(deps)) {}

std::string RankSupervisor::Key(const std::string& job_id, int32_t rank) { return absl::StrCat(job_id, "/", rank); }

absl::StatusOr<std::string> RankSupervisor::FetchArtifact(const std::string& sha256, const std::string& name) {
  const std::string path = absl::StrCat(o_.work_dir, "/cache/", sha256, "/", name.empty() ? "data.jsonl" : name);
  if (fs::exists(path)) return path;  // cached under its sha256, verified when it was written
  auto data = d_.download(sha256);
  if (!data.ok()) return data.status();
  if (Sha256Hex(*data) != sha256) return absl::DataLossError(absl::StrCat("dataset ", sha256, " arrived corrupted"));
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  absl::Status st = WriteFileAtomic(path, *data);
  if (!st.ok()) return st;
  int64_t cache_bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(o_.work_dir + "/cache", ec))
    if (e.is_regular_file(ec)) cache_bytes += static_cast<int64_t>(e.file_size(ec));
  d_.telemetry->SetDatasetCacheBytes(cache_bytes);
  return path;
}

absl::StatusOr<std::string> RankSupervisor::PrepareSpec(const RankAssignment& a, const std::string& dir) {
  auto spec = spec::ParseJobSpec(a.spec_yaml, absl::StrCat("spec of ", a.job_id), "", spec::SpecUse::kSubmission);
  if (!spec.ok()) return absl::InvalidArgumentError(absl::StrCat("invalid spec: ", spec.status().message()));
  for (spec::DatasetRef* d : {&spec->data.train, &spec->data.eval}) {
    if (!d->is_artifact()) continue;
    auto local = FetchArtifact(d->sha256(), d->name());
    if (!local.ok()) return local.status();
    *d = spec::DatasetRef::Path(*local);
  }
  if (!o_.model_roots.empty()) {
    std::error_code ec;
    const fs::path real = fs::weakly_canonical(spec->model.path, ec);
    bool inside = false;
    for (const auto& root : o_.model_roots) {
      const fs::path r = fs::weakly_canonical(root, ec);
      auto [rit, pit] = std::mismatch(r.begin(), r.end(), real.begin(), real.end());
      inside = inside || (rit == r.end() && !r.empty());
    }
    if (!inside)
      return absl::InvalidArgumentError(absl::StrCat("model path '", spec->model.path, "' (", real.string(),
                                                     ") is outside this worker's --model-root (",
                                                     absl::StrJoin(o_.model_roots, ", "), ")"));
  }
  if (!fs::exists(spec->model.path + "/config.json"))
    return absl::NotFoundError(absl::StrCat("model path '", spec->model.path, "' does not exist on worker ",
                                            o_.worker_name, " (models must be on shared storage)"));
  spec->output_dir = dir + "/out";
  const std::string path = dir + "/spec.yaml";
  absl::Status st = WriteFileAtomic(path, spec::ToCanonicalYaml(*spec));
  if (!st.ok()) return st;
  return path;
}

absl::StatusOr<std::string> RankSupervisor::PrepareResume(const RankAssignment& a, const std::string& dir) {
  auto bundle = d_.download(a.resume_sha256);
  if (!bundle.ok())
    return absl::UnavailableError(absl::StrCat("cannot fetch checkpoint step ", a.resume_step, " (", a.resume_sha256,
                                               "): ", bundle.status().message()));
  if (Sha256Hex(*bundle) != a.resume_sha256)
    return absl::UnavailableError(absl::StrCat("checkpoint step ", a.resume_step, " arrived corrupted (sha256 ",
                                               Sha256Hex(*bundle), ", expected ", a.resume_sha256, ")"));
  const std::string out = dir + "/resume";
  absl::Status st = UnpackBundle(*bundle, out);
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("checkpoint step ", a.resume_step, ": ", st.message()));
  return out;
}

void RankSupervisor::Exit(Rank& r, int32_t code, std::string message) {
  d_.telemetry->OnRankExit(r.cancelled || message == "cancelled" ? "cancelled" : code == 0 ? "succeeded" : "failed");
  r.exited = true;
  r.exit_code = code;
  r.message = std::move(message);
}

void RankSupervisor::KillAndReap(Rank& r) {
  if (r.pid <= 0 || r.exited) return;
  d_.launcher->Signal(r.pid, SIGKILL);
  // SIGKILL cannot be caught: the process is gone promptly; reap it so no zombie is left.
  while (!d_.launcher->TryReap(r.pid)) {
  }
  Exit(r, 128 + SIGKILL, "cancelled");
}

void RankSupervisor::Start(const RankAssignment& a) {
  const std::string key = Key(a.job_id, a.rank);
  if (auto old = ranks_.find(key); old != ranks_.end()) {
    if (old->second.assignment.attempt == a.attempt) return;  // a repeated assignment
    // A new placement of the job (the coordinator cancels the old one first; be sure).
    d_.forwarder->Forget(key);
    KillAndReap(old->second);
    ranks_.erase(old);
  }
  Rank r;
  r.assignment = a;
  r.dir = absl::StrCat(o_.work_dir, "/jobs/", a.job_id, "/rank-", a.rank);
  // Each placement starts clean: what an earlier one left (its checkpoints, metrics, log)
  // must not be resumed from or sent again.
  std::error_code ec;
  fs::remove_all(r.dir, ec);
  fs::create_directories(r.dir, ec);
  // A spec, data or model that is wrong fails the job (bad input); a fetch that failed may
  // work elsewhere or later (a restart).
  auto cannot_start = [&](const absl::Status& st) {
    const bool bad_input = st.code() == absl::StatusCode::kInvalidArgument || st.code() == absl::StatusCode::kNotFound;
    Exit(r, bad_input ? kExitBadInput : kExitFailed, std::string(st.message()));
    Log(absl::StrCat(key, " cannot start: ", r.message));
    ranks_[key] = r;
  };
  auto spec_path = PrepareSpec(a, r.dir);
  if (!spec_path.ok()) return cannot_start(spec_path.status());
  std::string resume_dir;
  if (!a.resume_sha256.empty()) {
    auto resume = PrepareResume(a, r.dir);
    if (!resume.ok()) return cannot_start(resume.status());
    resume_dir = *resume;
  }
  if (a.rank == 0 && !d_.port_is_free(a.master_port)) {
    r.port_busy = true;
    Exit(r, kExitRendezvousPortBusy,
         absl::StrCat("rendezvous port ", a.master_port, " is taken by another process on ", o_.address));
    Log(r.message);
    ranks_[key] = r;
    return;
  }
  SpawnOptions so;
  so.argv = {o_.polytune_bin,
             "train",
             *spec_path,
             "--rank",
             std::to_string(a.rank),
             "--world-size",
             std::to_string(a.world_size),
             "--master-addr",
             a.master_addr,
             "--master-port",
             std::to_string(a.master_port),
             "--local-rank",
             "0",
             "--collective-timeout",
             std::to_string(o_.collective_timeout_seconds)};
  if (!resume_dir.empty()) {
    so.argv.push_back("--resume");
    so.argv.push_back(resume_dir);
  }
  so.output_path = r.dir + "/rank.log";
  so.die_with_parent = true;  // a daemon killed with -9 takes its ranks along
  auto pid = d_.launcher->Spawn(so);
  if (!pid.ok()) {
    Exit(r, kExitFailed, absl::StrCat("cannot start the rank: ", pid.status().message()));
    ranks_[key] = r;
    return;
  }
  r.pid = *pid;
  Log(absl::StrCat("started ", key, " (pid ", r.pid, ")"));
  d_.forwarder->Track(key, a.job_id, a.rank, a.attempt, r.dir, /*results=*/a.rank == 0);
  ranks_[key] = r;
}

void RankSupervisor::Poll() {
  const int64_t now = d_.clock->SteadyNowMicros();
  for (auto& [key, r] : ranks_) {
    if (r.exited || r.pid < 0) continue;
    if (r.awaiting_upload) {
      if (d_.forwarder->Finished(key)) {
        r.awaiting_upload = false;
        Exit(r, r.exit_code, r.message);
        d_.forwarder->Forget(key);
        Log(absl::StrCat(key, " exited with ", r.exit_code));
      }
      continue;
    }
    std::optional<ExitStatus> status = d_.launcher->TryReap(r.pid);
    if (!status) {
      if ((r.cancelled || r.preempting) && now >= r.kill_at_micros) {
        d_.launcher->Signal(r.pid, SIGKILL);
        r.kill_at_micros = INT64_MAX;  // once
      }
      continue;
    }
    r.exit_code = status->ShellCode();
    if (r.cancelled) {
      Exit(r, r.exit_code, "cancelled");
      continue;
    }
    if (r.assignment.rank == 0 && status->ShellCode() == kExitRendezvousPortBusy) {
      // Another process took the port between our check and the rank's bind.
      r.port_busy = true;
      r.message =
          absl::StrCat("rendezvous port ", r.assignment.master_port, " is taken by another process on ", o_.address);
    } else if (!status->Success()) {
      auto log = ReadFileToString(r.dir + "/rank.log");
      r.message = log.ok() ? LastErrorLine(*log) : "";
      if (r.message.empty()) r.message = absl::StrCat("the rank ", status->Describe());
    }
    d_.forwarder->Finish(key);  // its last output (rank 0: metrics, final checkpoint) goes first
    r.awaiting_upload = true;
  }
}

void RankSupervisor::Cancel(const std::string& job_id) {
  const int64_t now = d_.clock->SteadyNowMicros();
  for (auto& [key, r] : ranks_) {
    if (r.assignment.job_id != job_id || r.exited) continue;
    d_.forwarder->Forget(key);
    if (r.awaiting_upload) {  // already exited; its results no longer matter
      r.awaiting_upload = false;
      Exit(r, r.exit_code, "cancelled");
      continue;
    }
    if (r.pid < 0 || r.cancelled) continue;
    r.cancelled = true;
    r.kill_at_micros = now + o_.cancel_grace_micros;
    d_.launcher->Signal(r.pid, SIGTERM);
  }
}

void RankSupervisor::CancelAll() {
  std::vector<std::string> jobs;
  for (const auto& [key, r] : ranks_) jobs.push_back(r.assignment.job_id);
  for (const auto& j : jobs) Cancel(j);
}

void RankSupervisor::Preempt(const std::string& job_id) {
  const int64_t now = d_.clock->SteadyNowMicros();
  for (auto& [key, r] : ranks_) {
    if (r.assignment.job_id != job_id || r.exited || r.awaiting_upload || r.pid < 0 || r.cancelled || r.preempting)
      continue;
    r.preempting = true;
    r.kill_at_micros = now + o_.preempt_grace_micros;
    d_.launcher->Signal(r.pid, SIGTERM);
    Log(absl::StrCat("asked ", key, " to checkpoint and stop"));
  }
}

void RankSupervisor::PreemptAll() {
  std::vector<std::string> jobs;
  for (const auto& [key, r] : ranks_) jobs.push_back(r.assignment.job_id);
  for (const auto& j : jobs) Preempt(j);
}

bool RankSupervisor::HasUnreportedExits() const {
  for (const auto& [key, r] : ranks_)
    if (r.exited) return true;
  return false;
}

std::vector<RankReport> RankSupervisor::Reports() const {
  std::vector<RankReport> out;
  for (const auto& [key, r] : ranks_) {
    RankReport rep;
    rep.job_id = r.assignment.job_id;
    rep.rank = r.assignment.rank;
    rep.attempt = r.assignment.attempt;
    rep.phase = r.exited ? RankReport::Phase::kExited : RankReport::Phase::kRunning;
    rep.exit_code = r.exit_code;
    rep.message = r.message;
    rep.rendezvous_port_busy = r.port_busy;
    out.push_back(rep);
  }
  return out;
}

void RankSupervisor::Acknowledge(const std::vector<RankReport>& reports) {
  for (const auto& rep : reports) {
    if (rep.phase != RankReport::Phase::kExited) continue;
    auto it = ranks_.find(Key(rep.job_id, rep.rank));
    if (it != ranks_.end() && it->second.exited && it->second.assignment.attempt == rep.attempt) {
      // Everything it produced is at the coordinator now: only its log and spec stay here
      // (small, for people debugging on the host), not its checkpoints and adapter.
      std::error_code ec;
      fs::remove_all(it->second.dir + "/out", ec);
      fs::remove_all(it->second.dir + "/resume", ec);
      ranks_.erase(it);
    }
  }
}

RankSupervisor::Counts RankSupervisor::CountRanks() const {
  Counts c;
  for (const auto& [key, r] : ranks_) {
    if (r.exited) {
      ++c.exited;
    } else if (r.awaiting_upload) {
      ++c.uploading;
    } else {
      ++c.running;
    }
  }
  return c;
}

bool RankSupervisor::HasLiveProcesses() const {
  for (const auto& [key, r] : ranks_)
    if (!r.exited && r.pid > 0) return true;
  return false;
}

}  // namespace polytune::worker
