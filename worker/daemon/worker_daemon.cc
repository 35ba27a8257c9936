#include "worker_daemon.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"
#include "polytune/coordinator/grpc_config.h"
#include "polytune/coordinator/grpc_services.h"

namespace polytune::worker {
namespace fs = std::filesystem;
using coordinator::ContextWithDeadline;
using coordinator::FromGrpc;

namespace {

std::string RandomHex(int n) {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(::getpid()));
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back("0123456789abcdef"[gen() % 16]);
  return s;
}

void Log(const std::string& msg) { std::fprintf(stderr, "polytune-worker: %s\n", msg.c_str()); }

// Total memory of each CUDA device in bytes, from nvidia-smi (empty when it is absent).
std::vector<int64_t> CudaMemory() {
  std::vector<int64_t> out;
  FILE* p = ::popen("nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null", "r");
  if (!p) return out;
  char line[128];
  while (std::fgets(line, sizeof(line), p)) {
    int64_t mib;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &mib)) out.push_back(mib << 20);
  }
  ::pclose(p);
  return out;
}

// Whether a TCP listener could bind `port` on every interface now, as rank 0's store will.
bool PortIsFree(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return true;  // cannot tell; let the rank try
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return free;
}

}  // namespace

WorkerDaemon::WorkerDaemon(DaemonOptions options) : o_(std::move(options)), incarnation_(RandomHex(16)) {}

absl::Status WorkerDaemon::Register() {
  v1::RegisterRequest req;
  req.set_worker_id(o_.name);
  req.set_incarnation(incarnation_);
  req.set_address(o_.address);
  req.set_rendezvous_port_first(o_.rendezvous_port_first);
  req.set_rendezvous_port_count(o_.rendezvous_port_count);
  for (const auto& d : devices_) *req.add_devices() = d;
  v1::RegisterResponse resp;
  auto ctx = ContextWithDeadline(5);
  return FromGrpc(stub_->Register(ctx.get(), req, &resp));
}

absl::StatusOr<std::string> WorkerDaemon::FetchArtifact(const std::string& sha) {
  const std::string path = absl::StrCat(o_.work_dir, "/cache/", sha);
  if (fs::exists(path)) return path;  // cached by sha256
  v1::DownloadRequest req;
  req.set_sha256(sha);
  auto ctx = ContextWithDeadline(120);
  auto reader = stub_->Download(ctx.get(), req);
  std::string data;
  v1::DownloadChunk chunk;
  while (reader->Read(&chunk)) data += chunk.data();
  absl::Status st = FromGrpc(reader->Finish());
  if (!st.ok()) return st;
  if (Sha256Hex(data) != sha) return absl::DataLossError(absl::StrCat("dataset ", sha, " arrived corrupted"));
  fs::create_directories(o_.work_dir + "/cache");
  st = WriteFileAtomic(path, data);
  if (!st.ok()) return st;
  return path;
}

absl::Status WorkerDaemon::StartRank(const v1::RankAssignment& a) {
  const std::string key = absl::StrCat(a.job_id(), "/", a.rank());
  if (auto old = ranks_.find(key); old != ranks_.end()) {
    if (old->second.attempt == a.attempt()) return absl::OkStatus();  // a repeated assignment
    if (!old->second.exited) StopJobAndWait(a.job_id());              // the coordinator cancels first; be sure
    ranks_.erase(old);  // a new placement of the job: its rank starts afresh
  }
  Rank r;
  r.job_id = a.job_id();
  r.rank = a.rank();
  r.attempt = a.attempt();
  r.dir = absl::StrCat(o_.work_dir, "/jobs/", a.job_id(), "/rank-", a.rank());
  fs::create_directories(r.dir);
  // The spec as submitted, with datasets fetched and paths made local.
  YAML::Node spec;
  try {
    spec = YAML::Load(a.spec_yaml());
  } catch (const YAML::Exception& e) {
    r.exited = true;
    r.exit_code = 2;
    r.message = absl::StrCat("invalid spec: ", e.msg);
    ranks_[key] = r;
    return absl::OkStatus();
  }
  spec.remove("resources");
  for (const char* k : {"train", "eval"}) {
    if (!spec["data"][k].IsDefined()) continue;
    std::string v = spec["data"][k].as<std::string>();
    if (v.rfind("sha256:", 0) == 0) {
      auto local = FetchArtifact(v.substr(7));
      if (!local.ok()) {
        r.exited = true;
        r.exit_code = 2;
        r.message = std::string(local.status().message());
        ranks_[key] = r;
        return absl::OkStatus();
      }
      spec["data"][k] = *local;
    }
  }
  const std::string model = spec["model"]["path"].IsDefined() ? spec["model"]["path"].as<std::string>() : "";
  if (!fs::exists(model + "/config.json")) {
    r.exited = true;
    r.exit_code = 2;
    r.message = absl::StrCat("model path '", model, "' does not exist on worker ", o_.name,
                             " (models must be on shared storage)");
    ranks_[key] = r;
    return absl::OkStatus();
  }
  if (a.rank() == 0 && !PortIsFree(a.master_port())) {
    r.exited = true;
    r.exit_code = 2;
    r.port_busy = true;
    r.message = absl::StrCat("rendezvous port ", a.master_port(), " is taken by another process on ", o_.address);
    Log(r.message);
    ranks_[key] = r;
    return absl::OkStatus();
  }
  spec["output_dir"] = r.dir + "/out";
  std::ofstream(r.dir + "/spec.yaml") << spec;
  const std::string log = r.dir + "/rank.log";
  std::vector<std::string> argv = {o_.polytune_bin,
                                   "train",
                                   r.dir + "/spec.yaml",
                                   "--rank",
                                   std::to_string(a.rank()),
                                   "--world-size",
                                   std::to_string(a.world_size()),
                                   "--master-addr",
                                   a.master_addr(),
                                   "--master-port",
                                   std::to_string(a.master_port()),
                                   "--local-rank",
                                   "0",
                                   "--collective-timeout",
                                   "60"};
  if (fs::exists(r.dir + "/out/checkpoints")) argv.push_back("--resume");
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    ::setpgid(0, 0);  // its own process group, so cancel stops everything it started
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> c;
    for (auto& s : argv) c.push_back(s.data());
    c.push_back(nullptr);
    ::execv(o_.polytune_bin.c_str(), c.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  r.pid = pid;
  Log(absl::StrCat("started ", key, " (pid ", pid, ")"));
  uploader_->Track(key, r.job_id, r.rank, r.dir, /*results=*/r.rank == 0);
  ranks_[key] = r;
  return absl::OkStatus();
}

void WorkerDaemon::PollRanks() {
  const auto now = std::chrono::steady_clock::now();
  for (auto& [key, r] : ranks_) {
    if (r.exited || r.pid < 0) continue;
    if (r.awaiting_upload) {
      if (uploader_->Finished(key)) {
        r.awaiting_upload = false;
        r.exited = true;
        uploader_->Forget(key);
        Log(absl::StrCat(key, " exited with ", r.exit_code));
      }
      continue;
    }
    int status = 0;
    if (::waitpid(r.pid, &status, WNOHANG) != r.pid) {
      if (r.cancelled && now >= r.kill_at) ::kill(-r.pid, SIGKILL);
      continue;
    }
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r.cancelled) {
      r.exited = true;
      r.message = "cancelled";
      continue;
    }
    if (r.exit_code != 0) {
      // The rank's last error line says why.
      auto log = ReadFileToString(r.dir + "/rank.log");
      if (log.ok()) {
        std::vector<std::string> lines = absl::StrSplit(*log, '\n', absl::SkipEmpty());
        for (auto it = lines.rbegin(); it != lines.rend(); ++it)
          if (it->find("error") != std::string::npos) {
            r.message = *it;
            break;
          }
      }
    }
    uploader_->Finish(key);  // the last log lines (rank 0: metrics, final checkpoint) before the exit is reported
    r.awaiting_upload = true;
  }
}

void WorkerDaemon::StopJob(const std::string& job_id) {
  for (auto& [key, r] : ranks_) {
    if (r.job_id != job_id || r.exited) continue;
    uploader_->Forget(key);
    if (r.awaiting_upload) {  // already exited; its results no longer matter
      r.awaiting_upload = false;
      r.exited = true;
      r.message = "cancelled";
      continue;
    }
    if (r.pid < 0 || r.cancelled) continue;
    r.cancelled = true;
    r.kill_at = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    ::kill(-r.pid, SIGTERM);
  }
}

void WorkerDaemon::StopJobAndWait(const std::string& job_id) {
  StopJob(job_id);
  for (;;) {
    bool alive = false;
    PollRanks();
    for (const auto& [key, r] : ranks_) alive = alive || (r.job_id == job_id && !r.exited && r.pid > 0);
    if (!alive) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

absl::Status WorkerDaemon::Run(const volatile bool* stop) {
  // Devices: auto means every CUDA device nvidia-smi reports, else one CPU slot.
  const std::vector<int64_t> cuda_memory = CudaMemory();
  if (o_.devices == "auto" && !cuda_memory.empty()) {
    std::string list;
    for (size_t i = 0; i < cuda_memory.size(); ++i) list += (i ? "," : "") + std::to_string(i);
    o_.devices = "cuda:" + list;
  }
  if (o_.devices == "auto" || o_.devices.rfind("cpu", 0) == 0) {
    int n = 1;
    if (o_.devices.rfind("cpu:", 0) == 0 && !absl::SimpleAtoi(o_.devices.substr(4), &n))
      return absl::InvalidArgumentError(absl::StrCat("--devices '", o_.devices, "' is not cpu:N"));
    for (int i = 0; i < n; ++i) {
      v1::DeviceInfo d;
      d.set_kind("cpu");
      d.set_index(i);
      devices_.push_back(d);
    }
  } else if (o_.devices.rfind("cuda:", 0) == 0) {
    for (absl::string_view idx : absl::StrSplit(o_.devices.substr(5), ',')) {
      int i;
      if (!absl::SimpleAtoi(idx, &i))
        return absl::InvalidArgumentError(absl::StrCat("--devices '", o_.devices, "' is not cuda:0,1,..."));
      v1::DeviceInfo d;
      d.set_kind("cuda");
      d.set_index(i);
      if (i >= 0 && i < static_cast<int>(cuda_memory.size())) d.set_memory_bytes(cuda_memory[i]);
      devices_.push_back(d);
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--devices '", o_.devices, "': use auto, cpu:N or cuda:0,1"));
  }
  stub_ = v1::WorkerService::NewStub(coordinator::MakeChannel(o_.coordinator));
  uploader_ = std::make_unique<ResultUploader>(stub_.get());
  bool registered = false;
  while (!*stop) {
    if (!registered) {
      absl::Status st = Register();
      if (!st.ok()) {
        Log(absl::StrCat("cannot register with ", o_.coordinator, ": ", st.message(), "; retrying"));
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
      registered = true;
      Log(absl::StrCat("registered as ", o_.name, " (incarnation ", incarnation_, ")"));
    }
    PollRanks();
    v1::HeartbeatRequest req;
    req.set_worker_id(o_.name);
    req.set_incarnation(incarnation_);
    // An exited rank is reported in a few heartbeats (one could be lost), then forgotten.
    for (auto it = ranks_.begin(); it != ranks_.end();) {
      if (it->second.exited && it->second.exit_reports >= 5)
        it = ranks_.erase(it);
      else
        ++it;
    }
    for (auto& [key, r] : ranks_) {
      if (r.exited) ++r.exit_reports;
      auto* s = req.add_ranks();
      s->set_job_id(r.job_id);
      s->set_rank(r.rank);
      s->set_phase(r.exited ? v1::RankStatus::EXITED : v1::RankStatus::RUNNING);
      s->set_exit_code(r.exit_code);
      s->set_message(r.message);
      s->set_attempt(r.attempt);
      s->set_rendezvous_port_busy(r.port_busy);
    }
    v1::HeartbeatResponse resp;
    auto ctx = ContextWithDeadline(5);
    grpc::Status st = stub_->Heartbeat(ctx.get(), req, &resp);
    if (!st.ok()) {
      if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) registered = false;  // must register again
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    for (const auto& c : resp.cancel_jobs()) StopJob(c);
    for (const auto& a : resp.start()) {
      absl::Status s = StartRank(a);
      if (!s.ok()) Log(std::string(s.message()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  std::set<std::string> running;
  for (auto& [key, r] : ranks_)
    if (!r.exited && r.pid > 0) running.insert(r.job_id);
  for (const auto& job : running) StopJobAndWait(job);
  uploader_.reset();
  return absl::OkStatus();
}

}  // namespace polytune::worker
