#include "control_commands.h"
#include "cli_util.h"
#include "report.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "polytune/common/bundle.h"
#include "polytune/common/file_util.h"
#include "polytune/common/metrics_record.h"
#include "polytune/common/sha256.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/metrics_convert.h"
#include "polytune/rpc/security.h"
#include "polytune/rpc/status.h"
#include "polytune/rpc/transfer.h"
#include "polytune/spec/job_spec.h"
#include "polytune/v1/polytune.grpc.pb.h"

namespace polytune::cli {
namespace {
namespace fs = std::filesystem;
using rpc::ContextWithDeadline;

struct ControlArgs {
  std::string coordinator, spec, name, job, out, checkpoint = "latest";
  int32_t priority = 0;
  bool json = false, follow = false, force = false;
  std::string worker;
  bool wait = false, let_finish = false;
  std::string token_file, tls_ca, tls_cert, tls_key;  // how to reach a secured coordinator
  std::string principal, role;                        // polytune auth token
};

std::string Target(const ControlArgs& a) {
  if (!a.coordinator.empty()) return a.coordinator;
  const char* env = std::getenv("POLYTUNE_COORDINATOR");
  return env && *env ? env : "127.0.0.1:7070";
}

// One clear line per RPC failure.
int RpcFail(const ControlArgs& a, const grpc::Status& st) {
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE || st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
    return Fail(absl::StrCat("cannot reach the coordinator at ", Target(a),
                             "; start polytune-coordinator or set --coordinator / POLYTUNE_COORDINATOR (a TLS "
                             "coordinator needs --tls-ca or POLYTUNE_TLS_CA)"));
  if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED)
    return Fail(absl::StrCat(st.error_message(), " (coordinator ", Target(a), ")"));
  return Fail(st.error_message());
}

// TLS and the bearer token, from flags or the environment, set once before the first channel:
// POLYTUNE_TOKEN or --token-file (default ~/.config/polytune/token, if it exists), and
// --tls-ca or POLYTUNE_TLS_CA. A bad file ends the command with one line naming it.
void ConfigureSecurity(const ControlArgs& a) {
  static bool done = false;
  if (done) return;
  done = true;
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  std::string token_file = a.token_file;
  const bool optional = token_file.empty();
  if (optional && !env("HOME").empty()) token_file = env("HOME") + "/.config/polytune/token";
  auto security = rpc::LoadClientSecurity(a.tls_ca.empty() ? env("POLYTUNE_TLS_CA") : a.tls_ca, a.tls_cert, a.tls_key,
                                          env("POLYTUNE_TOKEN"), token_file, optional);
  if (!security.ok()) {
    Fail(std::string(security.status().message()));
    std::exit(2);  // a CLI process, not a daemon: one clear line and out
  }
  rpc::SetClientSecurity(*security);
}

std::unique_ptr<v1::JobService::Stub> Stub(const ControlArgs& a) {
  ConfigureSecurity(a);
  return v1::JobService::NewStub(rpc::MakeChannel(Target(a)));
}

absl::StatusOr<std::string> Upload(v1::JobService::Stub& stub, const std::string& path) {
  auto data = ReadFileToString(path);
  if (!data.ok()) return data.status();
  const std::string sha = Sha256Hex(*data);
  auto ctx = ContextWithDeadline(rpc::kTransferDeadlineSeconds);
  v1::UploadArtifactResponse resp;
  auto writer = stub.UploadArtifact(ctx.get(), &resp);
  absl::Status st = rpc::WriteChunked<v1::UploadArtifactChunk>(writer.get(), *data,
                                                               [&](v1::UploadArtifactChunk& c) { c.set_sha256(sha); });
  if (!st.ok()) return st;
  return sha;
}

int Submit(const ControlArgs& a) {
  // Parsed and validated once, with the rules the coordinator applies again on its side.
  auto spec = spec::LoadJobSpec(a.spec, spec::SpecUse::kSubmission);
  if (!spec.ok()) return Fail(std::string(spec.status().message()));
  auto stub = Stub(a);
  // Local datasets are uploaded and then named by their sha256; the model must exist on the
  // workers (shared storage), so it travels as the absolute path the parser resolved.
  for (spec::DatasetRef* d : {&spec->data.train, &spec->data.eval}) {
    if (!d->is_path()) continue;
    auto sha = Upload(*stub, d->path());
    if (!sha.ok()) {
      if (sha.status().code() == absl::StatusCode::kUnavailable ||
          sha.status().code() == absl::StatusCode::kDeadlineExceeded)
        return RpcFail(a, grpc::Status(grpc::StatusCode::UNAVAILABLE, ""));
      return Fail(absl::StrCat("uploading ", d->path(), ": ", sha.status().message()));
    }
    *d = spec::DatasetRef::Artifact(*sha, fs::path(d->path()).filename().string());
  }
  spec->output_dir.clear();  // workers choose where ranks write
  v1::SubmitJobRequest req;
  req.set_name(a.name.empty() ? fs::path(a.spec).stem().string() : a.name);
  req.set_priority(a.priority);
  req.set_spec_yaml(spec::ToCanonicalYaml(*spec));
  v1::SubmitJobResponse resp;
  auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
  grpc::Status st = stub->SubmitJob(ctx.get(), req, &resp);
  if (!st.ok()) return RpcFail(a, st);
  if (a.json)
    std::printf("%s\n", nlohmann::json{{"id", resp.job().id()}}.dump().c_str());
  else
    std::printf("%s\n", resp.job().id().c_str());
  return 0;
}

// Reads a job's metrics stream after `*after_seq`, page by page, advancing the cursor.
int FetchMetrics(const ControlArgs& a, int64_t* after_seq, std::vector<MetricsRecord>* out) {
  for (;;) {
    v1::GetMetricsRequest req;
    req.set_id(a.job);
    req.set_after_seq(*after_seq);
    v1::GetMetricsResponse resp;
    auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
    grpc::Status st = Stub(a)->GetMetrics(ctx.get(), req, &resp);
    if (!st.ok()) return RpcFail(a, st);
    for (const auto& p : resp.records()) {
      auto r = rpc::FromProto(p);
      if (!r.ok()) return Fail(absl::StrCat("metrics record ", p.seq(), " of ", a.job, ": ", r.status().message()));
      out->push_back(*std::move(r));
      *after_seq = p.seq();
    }
    if (resp.records_size() < rpc::kMaxMetricsPerReply) return 0;
  }
}

std::string StateName(v1::JobState s) { return v1::JobState_Name(s); }

bool Terminal(v1::JobState s) { return s == v1::SUCCEEDED || s == v1::FAILED || s == v1::CANCELLED; }

int GetJob(const ControlArgs& a, v1::GetJobResponse* resp) {
  v1::GetJobRequest req;
  req.set_id(a.job);
  auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
  grpc::Status st = Stub(a)->GetJob(ctx.get(), req, resp);
  if (!st.ok()) return RpcFail(a, st);
  return 0;
}

nlohmann::json JobJson(const v1::Job& j) {
  nlohmann::json events = nlohmann::json::array();
  for (const auto& e : j.events())
    events.push_back(
        {{"time_unix_micros", e.time_unix_micros()}, {"state", StateName(e.state())}, {"reason", e.reason()}});
  return {{"id", j.id()},
          {"name", j.name()},
          {"state", StateName(j.state())},
          {"reason", j.reason()},
          {"priority", j.priority()},
          {"world_size", j.world_size()},
          {"workers", j.assigned_workers()},
          {"attempt", j.attempt()},
          {"restarts", j.restarts()},
          {"max_restarts", j.max_restarts()},
          {"preemptible", j.preemptible()},
          {"resume_step", j.resume_step()},
          {"events", events}};
}

void PrintDataPrep(const DataPrepSummary& d);  // below, beside the other progress printers

int Status(const ControlArgs& a) {
  v1::GetJobResponse r;
  if (int rc = GetJob(a, &r)) return rc;
  int64_t after_seq = 0;
  std::vector<MetricsRecord> records;
  if (int rc = FetchMetrics(a, &after_seq, &records)) return rc;
  nlohmann::json latest, eval, data_prep;
  const DataPrepSummary* prep = nullptr;
  for (const auto& m : records) {
    if (const auto* d = std::get_if<DataPrepSummary>(&m.value)) {
      prep = d;
      data_prep = MetricsRecordToJsonValue(m)["data_prep"];
      continue;
    }
    (m.is_eval() ? eval : latest) = MetricsRecordToJsonValue(m);
  }
  nlohmann::json cks = nlohmann::json::array();
  for (const auto& c : r.checkpoints())
    cks.push_back({{"step", c.step()}, {"sha256", c.sha256()}, {"size_bytes", c.size_bytes()}});
  if (a.json) {
    nlohmann::json j = JobJson(r.job());
    j["latest_metrics"] = latest;
    j["latest_eval"] = eval;
    if (prep != nullptr) j["data_prep"] = data_prep;
    j["checkpoints"] = cks;
    if (r.best_checkpoint_step() > 0) j["best_checkpoint_step"] = r.best_checkpoint_step();
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s (%s): %s — %s\n", r.job().id().c_str(), r.job().name().c_str(), StateName(r.job().state()).c_str(),
              r.job().reason().c_str());
  if (r.job().restarts() > 0)
    std::printf("restarts: %d of %d (resources.max_restarts)\n", r.job().restarts(), r.job().max_restarts());
  for (const auto& e : r.job().events()) std::printf("  %-10s %s\n", StateName(e.state()).c_str(), e.reason().c_str());
  if (prep != nullptr) PrintDataPrep(*prep);
  if (!latest.is_null()) std::printf("latest: %s\n", latest.dump().c_str());
  for (const auto& c : r.checkpoints())
    std::printf("checkpoint step %lld (%lld bytes, sha256 %s)%s\n", static_cast<long long>(c.step()),
                static_cast<long long>(c.size_bytes()), c.sha256().c_str(),
                c.step() == r.best_checkpoint_step() ? " best" : "");
  if (!eval.is_null()) std::printf("latest eval: %s\n", eval.dump().c_str());
  return 0;
}

void PrintDataPrep(const DataPrepSummary& d) {
  int64_t in = 0, kept = 0;
  for (const auto& [lang, l] : d.languages) {
    in += l.examples_in;
    kept += l.kept;
  }
  std::printf("data prepared%s: kept %lld of %lld examples\n", d.cached ? " (cached)" : "",
              static_cast<long long>(kept), static_cast<long long>(in));
  for (const auto& [lang, l] : d.languages) {
    std::printf("  %-5s %6lld of %6lld kept", lang.c_str(), static_cast<long long>(l.kept),
                static_cast<long long>(l.examples_in));
    for (const auto& [reason, n] : l.dropped) std::printf(" | %s %lld", reason.c_str(), static_cast<long long>(n));
    for (const auto& [type, n] : l.pii_replaced) std::printf(" | pii %s %lld", type.c_str(), static_cast<long long>(n));
    std::printf("\n");
  }
}

void PrintProgress(const MetricsRecord& m, bool tty) {
  if (const auto* d = std::get_if<DataPrepSummary>(&m.value)) {
    PrintDataPrep(*d);
    return;
  }
  if (const auto* e = std::get_if<EvalMetrics>(&m.value)) {
    std::printf("\neval @ step %lld:", static_cast<long long>(e->step));
    for (const auto& [lang, f] : e->languages) std::printf(" %s %.3f", lang.c_str(), f.loss);
    std::printf(" | overall %.4f\n", e->overall.loss);
    if (e->overall.has_generation()) {
      std::printf("  chrF:");
      for (const auto& [lang, f] : e->languages)
        if (f.generated > 0) std::printf(" %s %.1f", lang.c_str(), f.chrf);
      std::printf(" | overall %.2f (chrF++ %.2f, exact %.3f)\n", e->overall.chrf, e->overall.chrfpp,
                  e->overall.exact_match);
    }
    return;
  }
  const auto& s = std::get<StepMetrics>(m.value);
  const double eta = s.total_steps > s.step && s.step > 0 ? s.elapsed_seconds / s.step * (s.total_steps - s.step) : 0;
  std::printf("%sstep %lld/%lld | loss %.4f | %.0f tok/s | ETA %.0fs%s", tty ? "\r" : "",
              static_cast<long long>(s.step), static_cast<long long>(s.total_steps), s.loss, s.tokens_per_second, eta,
              tty ? "   " : "\n");
}

void PrintStateJson(const v1::Job& job) {
  std::printf(
      "%s\n",
      nlohmann::json{{"type", "state"}, {"state", StateName(job.state())}, {"reason", job.reason()}}.dump().c_str());
}

int Watch(const ControlArgs& a) {
  const bool tty = ::isatty(STDOUT_FILENO);
  int64_t after_seq = 0;  // only new records are fetched on each poll
  std::string shown_state;
  for (;;) {
    v1::GetJobResponse r;
    if (int rc = GetJob(a, &r)) return rc;
    // A job that waits says why, and again whenever the reason changes.
    const std::string state = StateName(r.job().state()) + ": " + r.job().reason();
    if (!Terminal(r.job().state()) && state != shown_state) {
      if (a.json) {
        PrintStateJson(r.job());
      } else if (r.job().state() == v1::PENDING || r.job().state() == v1::SCHEDULED) {
        std::printf("%s%s\n", tty ? "\r" : "", state.c_str());
      }
      shown_state = state;
    }
    std::vector<MetricsRecord> records;
    if (int rc = FetchMetrics(a, &after_seq, &records)) return rc;
    for (const auto& m : records) {
      if (a.json) {
        std::printf("%s\n",
                    nlohmann::json{{"type", "metrics"}, {"record", MetricsRecordToJsonValue(m)}}.dump().c_str());
      } else {
        PrintProgress(m, tty);
      }
    }
    std::fflush(stdout);
    if (Terminal(r.job().state())) {
      if (a.json) {
        PrintStateJson(r.job());
      } else {
        std::printf("\n%s: %s — %s\n", r.job().id().c_str(), StateName(r.job().state()).c_str(),
                    r.job().reason().c_str());
      }
      return r.job().state() == v1::SUCCEEDED ? 0 : 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

// Events, the ranks' own output ([rank R] lines, as their workers forward it) and metrics
// records; with --follow, new ones as they arrive until the job ends.
int Logs(const ControlArgs& a) {
  size_t events = 0;
  int64_t after_seq = 0, metrics_seq = 0;
  for (;;) {
    v1::GetJobResponse r;
    if (int rc = GetJob(a, &r)) return rc;
    const bool ended = Terminal(r.job().state());  // read before the lines, so none is missed
    for (; events < static_cast<size_t>(r.job().events_size()); ++events) {
      const auto& e = r.job().events(events);
      if (a.json) {
        std::printf("%s\n", nlohmann::json{{"type", "event"},
                                           {"time_unix_micros", e.time_unix_micros()},
                                           {"state", StateName(e.state())},
                                           {"reason", e.reason()}}
                                .dump()
                                .c_str());
      } else {
        std::printf("[event] %s %s\n", StateName(e.state()).c_str(), e.reason().c_str());
      }
    }
    for (bool more = true; more;) {
      v1::GetLogsRequest req;
      req.set_id(a.job);
      req.set_after_seq(after_seq);
      v1::GetLogsResponse resp;
      auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
      grpc::Status st = Stub(a)->GetLogs(ctx.get(), req, &resp);
      if (!st.ok()) return RpcFail(a, st);
      for (const auto& l : resp.lines()) {
        if (a.json) {
          std::printf("%s\n", nlohmann::json{{"type", "log"}, {"seq", l.seq()}, {"rank", l.rank()}, {"text", l.text()}}
                                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                                  .c_str());
        } else {
          std::printf("[rank %d] %s\n", l.rank(), l.text().c_str());
        }
        after_seq = l.seq();
      }
      more = resp.lines_size() > 0;
    }
    std::vector<MetricsRecord> records;
    if (int rc = FetchMetrics(a, &metrics_seq, &records)) return rc;
    for (const auto& m : records) {
      if (a.json) {
        std::printf("%s\n",
                    nlohmann::json{{"type", "metrics"}, {"record", MetricsRecordToJsonValue(m)}}.dump().c_str());
      } else {
        std::printf("%s\n", MetricsRecordToJson(m).c_str());
      }
    }
    std::fflush(stdout);
    if (!a.follow || ended) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

int Cancel(const ControlArgs& a) {
  v1::CancelJobRequest req;
  req.set_id(a.job);
  v1::CancelJobResponse resp;
  auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
  grpc::Status st = Stub(a)->CancelJob(ctx.get(), req, &resp);
  if (!st.ok()) return RpcFail(a, st);
  if (a.json) {
    std::printf("%s\n", JobJson(resp.job()).dump().c_str());
  } else {
    std::printf("%s: %s\n", resp.job().id().c_str(), StateName(resp.job().state()).c_str());
  }
  return 0;
}

int Jobs(const ControlArgs& a) {
  v1::ListJobsResponse resp;
  auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
  grpc::Status st = Stub(a)->ListJobs(ctx.get(), v1::ListJobsRequest(), &resp);
  if (!st.ok()) return RpcFail(a, st);
  if (a.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& job : resp.jobs()) j.push_back(JobJson(job));
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%-12s %-20s %-10s %5s  %s\n", "ID", "NAME", "STATE", "RANKS", "REASON");
  for (const auto& j : resp.jobs())
    std::printf("%-12s %-20s %-10s %5d  %s\n", j.id().c_str(), j.name().c_str(), StateName(j.state()).c_str(),
                j.world_size(), j.reason().c_str());
  return 0;
}

int Workers(const ControlArgs& a) {
  v1::ListWorkersResponse resp;
  auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
  grpc::Status st = Stub(a)->ListWorkers(ctx.get(), v1::ListWorkersRequest(), &resp);
  if (!st.ok()) return RpcFail(a, st);
  if (a.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& w : resp.workers())
      j.push_back({{"id", w.id()},
                   {"address", w.address()},
                   {"devices", w.devices()},
                   {"free_devices", w.free_devices()},
                   {"alive", w.alive()},
                   {"draining", w.draining()}});
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%-16s %-16s %7s %5s %-5s %s\n", "WORKER", "ADDRESS", "DEVICES", "FREE", "ALIVE", "DRAINING");
  for (const auto& w : resp.workers())
    std::printf("%-16s %-16s %7d %5d %-5s %s\n", w.id().c_str(), w.address().c_str(), w.devices(), w.free_devices(),
                w.alive() ? "yes" : "no", w.draining() ? "yes" : "no");
  return 0;
}

void PrintWorker(const ControlArgs& a, const v1::WorkerInfo& w, const char* what) {
  if (a.json) {
    std::printf("%s\n", nlohmann::json{{"id", w.id()},
                                       {"draining", w.draining()},
                                       {"devices", w.devices()},
                                       {"free_devices", w.free_devices()},
                                       {"alive", w.alive()}}
                            .dump()
                            .c_str());
  } else {
    std::printf("%s %s (%d of %d devices free)\n", w.id().c_str(), what, w.free_devices(), w.devices());
  }
}

// Drain: no new ranks there; running jobs checkpoint and move (or finish, --let-finish).
// --wait returns once the worker runs nothing (or is gone): what a preStop hook needs.
int Drain(const ControlArgs& a) {
  v1::DrainWorkerRequest req;
  req.set_id(a.worker);
  req.set_let_finish(a.let_finish);
  v1::DrainWorkerResponse resp;
  auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
  grpc::Status st = Stub(a)->DrainWorker(ctx.get(), req, &resp);
  if (!st.ok()) return RpcFail(a, st);
  v1::WorkerInfo w = resp.worker();
  while (a.wait && w.alive() && w.free_devices() < w.devices()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    v1::ListWorkersResponse list;
    auto lctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
    grpc::Status ls = Stub(a)->ListWorkers(lctx.get(), v1::ListWorkersRequest(), &list);
    if (!ls.ok()) return RpcFail(a, ls);
    for (const auto& x : list.workers())
      if (x.id() == a.worker) w = x;
  }
  PrintWorker(a, w, a.wait ? "drained" : "draining");
  return 0;
}

int Undrain(const ControlArgs& a) {
  v1::UndrainWorkerRequest req;
  req.set_id(a.worker);
  v1::UndrainWorkerResponse resp;
  auto ctx = ContextWithDeadline(rpc::kControlDeadlineSeconds);
  grpc::Status st = Stub(a)->UndrainWorker(ctx.get(), req, &resp);
  if (!st.ok()) return RpcFail(a, st);
  PrintWorker(a, resp.worker(), "undrained");
  return 0;
}

int Download(const ControlArgs& a) {
  // A folder holding anything is only written into with --force, and even then only the
  // adapter files are replaced: nothing else of the user's is touched.
  std::error_code ec;
  const bool has_content = fs::exists(a.out, ec) && (!fs::is_directory(a.out, ec) || !fs::is_empty(a.out, ec));
  if (has_content && !a.force)
    return Fail(absl::StrCat("--out ", a.out,
                             " is not empty; choose an empty or new folder, or pass --force to replace the adapter "
                             "files in it (other files are kept)"));
  if (fs::exists(a.out, ec) && !fs::is_directory(a.out, ec))
    return Fail(absl::StrCat("--out ", a.out, " is a file, not a folder"));
  v1::GetJobResponse r;
  if (int rc = GetJob(a, &r)) return rc;
  if (r.checkpoints().empty()) return Fail(absl::StrCat(a.job, " has no checkpoints yet"));
  const v1::Checkpoint* pick = &r.checkpoints(r.checkpoints_size() - 1);
  if (a.checkpoint == "best") {
    pick = nullptr;
    for (const auto& c : r.checkpoints())
      if (c.step() == r.best_checkpoint_step()) pick = &c;
    if (!pick)
      return Fail(absl::StrCat(a.job,
                               " has no best checkpoint yet: none of its evaluations has a stored checkpoint (it needs "
                               "data.eval; training.early_stopping picks the metric)"));
  } else if (a.checkpoint != "latest") {
    pick = nullptr;
    for (const auto& c : r.checkpoints())
      if (std::to_string(c.step()) == a.checkpoint) pick = &c;
    if (!pick) return Fail(absl::StrCat(a.job, " has no checkpoint at step ", a.checkpoint));
  }
  auto bundle = rpc::DownloadVerified(*Stub(a), pick->sha256());
  if (!bundle.ok()) {
    if (bundle.status().code() == absl::StatusCode::kUnavailable) return RpcFail(a, rpc::ToGrpc(bundle.status()));
    return Fail(std::string(bundle.status().message()));
  }
  // Only the PEFT adapter files of the checkpoint: a new folder is committed whole (staging,
  // rename); into an existing one each file is replaced atomically.
  const std::vector<std::string> files = {"adapter_config.json", "adapter_model.safetensors"};
  absl::Status us = has_content ? rpc::CommitBundleFilesInto(*bundle, a.out, files)
                                : rpc::CommitBundleToDirectory(*bundle, a.out, files);
  if (!us.ok()) return Fail(std::string(us.message()));
  if (a.json) {
    std::printf("%s\n",
                nlohmann::json{{"job", a.job}, {"step", pick->step()}, {"sha256", pick->sha256()}, {"out", a.out}}
                    .dump()
                    .c_str());
  } else {
    std::printf("wrote the step-%lld adapter of %s to %s\n", static_cast<long long>(pick->step()), a.job.c_str(),
                a.out.c_str());
  }
  return 0;
}

// `polytune report`: a job id reads the coordinator (the job, its events and metrics, and the
// sample generations inside its latest checkpoint); anything else is an output folder.
int Report(const ControlArgs& a) {
  if (a.out.empty()) return Fail("--out FILE is required (the HTML report to write)");
  absl::StatusOr<ReportData> data;
  std::error_code ec;
  if (fs::is_directory(a.job, ec)) {
    data = LoadOutputDirReport(a.job);
  } else if (a.job.rfind("job-", 0) == 0) {
    v1::GetJobResponse r;
    if (int rc = GetJob(a, &r)) return rc;
    ReportData d;
    d.title = absl::StrCat(r.job().id(), " (", r.job().name(), ")");
    d.state = StateName(r.job().state());
    d.reason = r.job().reason();
    d.spec_yaml = r.job().spec_yaml();
    for (const auto& e : r.job().events()) d.events.push_back({e.time_unix_micros(), StateName(e.state()), e.reason()});
    int64_t after_seq = 0;
    if (int rc = FetchMetrics(a, &after_seq, &d.metrics)) return rc;
    for (const auto& c : r.checkpoints()) d.checkpoint_steps.push_back(c.step());
    if (r.best_checkpoint_step() > 0) d.best_step = r.best_checkpoint_step();
    if (!r.checkpoints().empty()) {
      auto bundle = rpc::DownloadVerified(*Stub(a), r.checkpoints(r.checkpoints_size() - 1).sha256());
      if (!bundle.ok()) return Fail(std::string(bundle.status().message()));
      const std::string tmp = (fs::temp_directory_path() / absl::StrCat("polytune-report-", ::getpid())).string();
      absl::Status st = UnpackBundle(*bundle, tmp);
      auto gens = st.ok() ? ReadFileToString(tmp + "/generations.jsonl") : absl::StatusOr<std::string>(st);
      if (gens.ok()) {
        auto samples = ParseGenerationSamples(*gens, "generations.jsonl of the latest checkpoint");
        if (samples.ok()) d.samples = std::move(*samples);
      }
      fs::remove_all(tmp, ec);
    }
    data = std::move(d);
  } else {
    return Fail(absl::StrCat("'", a.job, "' is neither a job id (job-NNNNNN) nor an output folder"));
  }
  if (!data.ok()) return Fail(data.status());
  absl::Status st = WriteFileAtomic(a.out, RenderReportHtml(*data));
  if (!st.ok()) return Fail(st);
  std::printf("wrote %s (%zu metrics records, %zu sample generations)\n", a.out.c_str(), data->metrics.size(),
              data->samples.size());
  return 0;
}

}  // namespace

// A new bearer token and the --auth-file entry holding its sha256 (never the token itself).
int AuthToken(const ControlArgs& a) {
  if (a.role != "admin" && a.role != "user" && a.role != "viewer" && a.role != "worker")
    return Fail(absl::StrCat("--role '", a.role, "' is not admin, user, viewer or worker"));
  if (a.principal.empty() || a.principal.find_first_of(" :{}[],#\"'") != std::string::npos)
    return Fail("--name must be a plain name (no spaces or YAML punctuation)");
  std::ifstream in("/dev/urandom", std::ios::binary);
  unsigned char bytes[32];
  if (!in.read(reinterpret_cast<char*>(bytes), sizeof(bytes))) return Fail("cannot read /dev/urandom");
  std::string token;
  for (unsigned char b : bytes) token += absl::StrFormat("%02x", b);
  std::printf("%s\n", token.c_str());
  std::fflush(stdout);  // the token first, then the instructions
  std::fprintf(stderr,
               "give the token (line above) to %s; add this line under 'principals:' in the coordinator's "
               "--auth-file and send it SIGHUP:\n  - {name: %s, role: %s, token_sha256: %s}\n",
               a.principal.c_str(), a.principal.c_str(), a.role.c_str(), Sha256Hex(token).c_str());
  return 0;
}

void RegisterControlCommands(CLI::App& app, const std::shared_ptr<std::function<int()>>& run) {
  auto a = std::make_shared<ControlArgs>();
  app.add_option("--coordinator", a->coordinator,
                 "Coordinator HOST:PORT (default $POLYTUNE_COORDINATOR or 127.0.0.1:7070)");
  app.add_option("--token-file", a->token_file,
                 "File holding your bearer token (default: $POLYTUNE_TOKEN, else ~/.config/polytune/token)");
  app.add_option("--tls-ca", a->tls_ca, "PEM CA of the coordinator's certificate: speak TLS (or $POLYTUNE_TLS_CA)");
  app.add_option("--tls-cert", a->tls_cert, "PEM client certificate, when the coordinator requires mTLS");
  app.add_option("--tls-key", a->tls_key, "PEM private key of --tls-cert");
  // Credentials are loaded once the command line is parsed, before any call makes a context.
  app.parse_complete_callback([a] { ConfigureSecurity(*a); });
  auto* auth = app.add_subcommand("auth", "Credentials for a coordinator started with --auth-file");
  auth->require_subcommand(1);
  auto* token = auth->add_subcommand("token", "Print a new token and the --auth-file line for it");
  token->add_option("--name", a->principal, "Who it is for (a user, or a worker's principal)")->required();
  token->add_option("--role", a->role, "admin, user, viewer or worker")->required();
  token->callback([run, a] { *run = [a] { return AuthToken(*a); }; });
  app.fallthrough();  // --coordinator may follow the subcommand too
  auto* submit = app.add_subcommand("submit", "Submit a job: training config plus resources: {world_size: N}");
  submit->add_option("spec", a->spec, "Job YAML")->required();
  submit->add_option("--name", a->name, "Job name (default: file name)");
  submit->add_option("--priority", a->priority, "Higher runs first")->capture_default_str();
  submit->add_flag("--json", a->json, "Print {\"id\": ...}");
  submit->callback([run, a] { *run = [a] { return Submit(*a); }; });
  auto* jobs = app.add_subcommand("jobs", "List jobs");
  jobs->add_flag("--json", a->json, "Print the jobs as a JSON array");
  jobs->callback([run, a] { *run = [a] { return Jobs(*a); }; });
  auto* status = app.add_subcommand("status", "State, reason, events, latest metrics and checkpoints of a job");
  status->add_option("job", a->job, "Job id (job-NNNNNN)")->required();
  status->add_flag("--json", a->json, "Print the job, its latest metrics and checkpoints as JSON");
  status->callback([run, a] { *run = [a] { return Status(*a); }; });
  auto* report = app.add_subcommand("report", "One self-contained HTML report of a job or a training output folder");
  report->add_option("source", a->job, "Job id (job-NNNNNN) or a `polytune train` output_dir")->required();
  report->add_option("--out", a->out, "HTML file to write")->required();
  report->callback([run, a] { *run = [a] { return Report(*a); }; });

  auto* watch = app.add_subcommand("watch", "Follow a job live; exit code 0 only if it SUCCEEDED");
  watch->add_option("job", a->job, "Job id (job-NNNNNN)")->required();
  watch->add_flag("--json", a->json, "One JSON object per line: state changes and metrics records");
  watch->callback([run, a] { *run = [a] { return Watch(*a); }; });
  auto* logs = app.add_subcommand("logs", "Events, rank output and metrics records of a job");
  logs->add_option("job", a->job, "Job id (job-NNNNNN)")->required();
  logs->add_flag("--json", a->json, "One JSON object per line: events, rank output, metrics records");
  logs->add_flag("--follow", a->follow, "Keep printing until the job ends");
  logs->callback([run, a] { *run = [a] { return Logs(*a); }; });
  auto* cancel = app.add_subcommand("cancel", "Cancel a job");
  cancel->add_option("job", a->job, "Job id (job-NNNNNN)")->required();
  cancel->add_flag("--json", a->json, "Print the job as JSON");
  cancel->callback([run, a] { *run = [a] { return Cancel(*a); }; });
  auto* workers = app.add_subcommand("workers", "List workers; drain or undrain one");
  workers->add_flag("--json", a->json, "Print the workers as a JSON array");
  auto* drain = workers->add_subcommand("drain", "Place no new ranks on a worker and move its running jobs away");
  drain->add_option("name", a->worker, "Worker id")->required();
  drain->add_flag("--wait", a->wait, "Return once the worker runs nothing");
  drain->add_flag("--let-finish", a->let_finish, "Let running jobs finish there instead of moving them");
  drain->add_flag("--json", a->json, "Print the worker as JSON");
  drain->callback([run, a] { *run = [a] { return Drain(*a); }; });
  auto* undrain = workers->add_subcommand("undrain", "Place ranks on a drained worker again");
  undrain->add_option("name", a->worker, "Worker id")->required();
  undrain->add_flag("--json", a->json, "Print the worker as JSON");
  undrain->callback([run, a] { *run = [a] { return Undrain(*a); }; });
  workers->callback([run, a, drain, undrain] {
    if (drain->parsed() || undrain->parsed()) return;  // their own callbacks ran
    *run = [a] { return Workers(*a); };
  });
  auto* download = app.add_subcommand("download", "Download a checkpoint's PEFT adapter");
  download->add_option("job", a->job, "Job id (job-NNNNNN)")->required();
  download->add_flag("--force", a->force, "Write into a non-empty --out, replacing only the adapter files");
  download->add_flag("--json", a->json, "Print what was written as JSON");
  download->add_option("--checkpoint", a->checkpoint, "STEP, latest or best")->capture_default_str();
  download->add_option("--out", a->out, "Output folder")->required();
  download->callback([run, a] { *run = [a] { return Download(*a); }; });
}

}  // namespace polytune::cli
