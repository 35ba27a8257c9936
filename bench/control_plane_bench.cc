// Control-plane benchmark, printing one JSON object:
//  * schedule decision latency (p50/p99) with 10,000 queued jobs and 1,000 workers (the pure
//    policy, as the coordinator runs it on every tick);
//  * heartbeats per second a real polytune-coordinator process handles, and its CPU use
//    with 1,000 workers beating at 1 Hz;
//  * checkpoint upload MB/s over loopback (64 MiB in 1 MiB chunks, sha256-verified).
//
//   build/bench/control_plane_bench [--coordinator-bin PATH]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "nlohmann/json.hpp"
#include "polytune/common/sha256.h"
#include "polytune/coordinator/scheduler.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/transfer.h"
#include "polytune/v1/polytune.grpc.pb.h"

using namespace polytune;
using namespace polytune::coordinator;
using namespace polytune::rpc;
using Clock = std::chrono::steady_clock;

namespace {

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto rp = s.rfind(')');
  std::istringstream rest(s.substr(rp + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15; ++i) {
    rest >> f;
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

}  // namespace

int main(int argc, char** argv) {
  std::string coordinator_bin =
      (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "../coordinator/polytune-coordinator").string();
  // --data-root: where the coordinator's data folder (and so the artifact store) lives; a tmpfs
  // such as /dev/shm separates the transfer path's speed from the disk's durable-write speed.
  std::string data_root = "/tmp";
  int transfer_rounds = 3;
  bool heartbeats = true;  // --heartbeats 0: only the scheduler and the transfers (15 s shorter)
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--coordinator-bin") == 0) coordinator_bin = argv[i + 1];
    if (std::strcmp(argv[i], "--data-root") == 0) data_root = argv[i + 1];
    if (std::strcmp(argv[i], "--transfer-rounds") == 0) transfer_rounds = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--heartbeats") == 0) heartbeats = std::atoi(argv[i + 1]) != 0;
  }
  nlohmann::json out;

  // 1. Scheduling policy.
  {
    std::mt19937 gen(1);
    std::vector<Job> pending(10000);
    for (size_t i = 0; i < pending.size(); ++i) {
      pending[i].id = "job-" + std::to_string(i);
      pending[i].world_size = 1 + static_cast<int32_t>(gen() % 8);
      pending[i].priority = static_cast<int32_t>(gen() % 4);
      pending[i].sequence = static_cast<int64_t>(i);
    }
    std::vector<WorkerCapacity> workers(1000);
    for (size_t i = 0; i < workers.size(); ++i)
      workers[i] = {"w" + std::to_string(i), 8, static_cast<int32_t>(gen() % 9)};
    std::vector<double> ms;
    size_t placed = 0;
    for (int it = 0; it < 100; ++it) {
      auto t0 = Clock::now();
      ScheduleDecision d = DecideSchedule(pending, workers);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      placed = d.placements.size();
    }
    out["schedule_queued_jobs"] = pending.size();
    out["schedule_workers"] = workers.size();
    out["schedule_jobs_placed_per_decision"] = placed;
    out["schedule_decision_ms_p50"] = Percentile(ms, 0.5);
    out["schedule_decision_ms_p99"] = Percentile(ms, 0.99);
  }

  // A real coordinator process.
  std::string tmpl = data_root + "/polytune-cpbench-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::fprintf(stderr, "cannot create a folder under --data-root %s: %s\n", data_root.c_str(), std::strerror(errno));
    return 1;
  }
  const std::string dir = tmpl;
  const int port = 20000 + static_cast<int>(::getpid() % 20000);
  const std::string target = "127.0.0.1:" + std::to_string(port);
  pid_t coord = ::fork();
  if (coord == 0) {
    std::freopen("/dev/null", "w", stderr);
    ::execl(coordinator_bin.c_str(), coordinator_bin.c_str(), "--listen", target.c_str(), "--data-dir",
            (dir + "/c").c_str(), "--heartbeat-timeout", "60s", "--metrics-listen", "127.0.0.1:0", nullptr);
    ::_exit(127);
  }
  auto channel = MakeChannel(target);
  auto workers = v1::WorkerService::NewStub(channel);
  auto jobs = v1::JobService::NewStub(channel);
  for (int i = 0; i < 100; ++i) {
    v1::ListWorkersResponse r;
    auto ctx = ContextWithDeadline(1);
    if (jobs->ListWorkers(ctx.get(), v1::ListWorkersRequest(), &r).ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const int kWorkers = 1000;
  for (int i = 0; i < kWorkers; ++i) {
    v1::RegisterRequest req;
    req.set_worker_id("w" + std::to_string(i));
    req.set_incarnation("inc");
    req.set_address("127.0.0.1");
    auto* d = req.add_devices();
    d->set_kind("cpu");
    v1::RegisterResponse resp;
    auto ctx = ContextWithDeadline(5);
    if (!workers->Register(ctx.get(), req, &resp).ok()) {
      std::fprintf(stderr, "register failed\n");
      return 1;
    }
  }
  auto beat = [&](int w) {
    v1::HeartbeatRequest req;
    req.set_worker_id("w" + std::to_string(w));
    req.set_incarnation("inc");
    v1::HeartbeatResponse resp;
    auto ctx = ContextWithDeadline(5);
    return workers->Heartbeat(ctx.get(), req, &resp).ok();
  };

  // 2a. Throughput: 8 client threads as fast as they can for 5 s.
  if (heartbeats) {
    std::atomic<int64_t> done{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        for (int i = t; !stop; i = (i + 8) % kWorkers)
          if (beat(i)) ++done;
      });
    auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(5));
    stop = true;
    for (auto& th : threads) th.join();
    out["heartbeats_per_second_max"] = done / std::chrono::duration<double>(Clock::now() - t0).count();
  }
  // 2b. 1,000 workers at 1 Hz for 10 s: the coordinator's CPU.
  if (heartbeats) {
    const double cpu0 = ProcessCpuSeconds(coord);
    auto t0 = Clock::now();
    int64_t sent = 0;
    for (int second = 0; second < 10; ++second) {
      auto tick = t0 + std::chrono::seconds(second);
      std::this_thread::sleep_until(tick);
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
          for (int i = t; i < kWorkers; i += 4) beat(i);
        });
      for (auto& th : threads) th.join();
      sent += kWorkers;
    }
    std::this_thread::sleep_until(t0 + std::chrono::seconds(10));
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    out["heartbeats_at_1hz_sent"] = sent;
    out["coordinator_cpu_cores_at_1000_workers_1hz"] = (ProcessCpuSeconds(coord) - cpu0) / wall;
  }
  // 3. Checkpoint upload over loopback.
  {
    v1::SubmitJobRequest sreq;
    sreq.set_name("bench");
    // A valid spec that never fits the cluster: it stays pending and only gives checkpoints a job.
    sreq.set_spec_yaml(
        "model: {path: /bench/model}\ndata: {train: /bench/train.jsonl}\nresources: {world_size: 4096}\n");
    v1::SubmitJobResponse sresp;
    auto sctx = ContextWithDeadline(5);
    jobs->SubmitJob(sctx.get(), sreq, &sresp);
    std::string payload(64 << 20, '\0');
    std::mt19937_64 gen(7);
    for (size_t i = 0; i + 8 <= payload.size(); i += 8) {
      uint64_t v = gen();
      std::memcpy(&payload[i], &v, 8);
    }
    out["checkpoint_transfer_mb"] = payload.size() / 1e6;
    out["checkpoint_transfer_data_root"] = data_root;
    // Each round uploads a distinct archive (first 8 bytes = the round), so none is deduplicated
    // against an earlier one, then downloads it back.
    std::vector<double> up_mbps, down_mbps;
    // CPU cores each side kept busy during a transfer ({client, coordinator}): a receiver at
    // one core is CPU-bound, both well under one are waiting on each other.
    std::vector<std::pair<double, double>> up_cores, down_cores;
    bool all_verified = true;
    for (int round = 0; round < transfer_rounds; ++round) {
      const uint64_t tag = 0x5eed0000u + static_cast<uint64_t>(round);
      std::memcpy(&payload[0], &tag, 8);
      const std::string sha = Sha256Hex(payload);
      const double ccpu0 = ProcessCpuSeconds(::getpid()), scpu0 = ProcessCpuSeconds(coord);
      auto t0 = Clock::now();
      auto ctx = ContextWithDeadline(120);
      v1::UploadCheckpointResponse resp;
      auto writer = workers->UploadCheckpoint(ctx.get(), &resp);
      for (size_t pos = 0; pos < payload.size(); pos += kMaxChunkBytes) {
        v1::UploadCheckpointChunk c;
        if (pos == 0) {
          c.set_job_id(sresp.job().id());
          c.set_step(1 + round);
          c.set_sha256(sha);
        }
        c.mutable_data()->assign(payload, pos, kMaxChunkBytes);
        writer->Write(c);
      }
      writer->WritesDone();
      grpc::Status st = writer->Finish();
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      // The bench job is never placed, so the coordinator verifies the archive's sha256 and
      // stores it, then declines to record a checkpoint for a placement that never ran
      // (FAILED_PRECONDITION): that still is a complete, verified transfer.
      const bool verified = st.ok() || st.error_code() == grpc::StatusCode::FAILED_PRECONDITION;
      if (!verified) out["checkpoint_upload_error"] = st.error_message();
      up_mbps.push_back(payload.size() / 1e6 / secs);
      const double ccpu1 = ProcessCpuSeconds(::getpid()), scpu1 = ProcessCpuSeconds(coord);
      up_cores.push_back({(ccpu1 - ccpu0) / secs, (scpu1 - scpu0) / secs});
      // The same bytes back, sha256-verified by the client.
      const auto d0 = Clock::now();
      auto back = polytune::rpc::DownloadVerified(*jobs, sha);
      const double dsecs = std::chrono::duration<double>(Clock::now() - d0).count();
      const double ccpu2 = ProcessCpuSeconds(::getpid()), scpu2 = ProcessCpuSeconds(coord);
      down_cores.push_back({(ccpu2 - ccpu1) / dsecs, (scpu2 - scpu1) / dsecs});
      const bool back_ok = back.ok() && *back == payload;
      if (!back.ok()) out["checkpoint_download_error"] = std::string(back.status().message());
      down_mbps.push_back(payload.size() / 1e6 / dsecs);
      all_verified = all_verified && verified && back_ok;
    }
    if (sresp.job().id().empty()) out["checkpoint_upload_error_submit"] = "the bench job was not accepted";
    out["checkpoint_transfers_verified"] = all_verified;
    out["checkpoint_upload_mb_per_s_runs"] = up_mbps;
    out["checkpoint_upload_mb_per_s"] = Percentile(up_mbps, 0.5);
    out["checkpoint_download_mb_per_s_runs"] = down_mbps;
    out["checkpoint_download_mb_per_s"] = Percentile(down_mbps, 0.5);
    out["checkpoint_upload_cores_client_coordinator_runs"] = up_cores;
    out["checkpoint_download_cores_client_coordinator_runs"] = down_cores;
  }
  ::kill(coord, SIGTERM);
  ::waitpid(coord, nullptr, 0);
  std::filesystem::remove_all(dir);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
