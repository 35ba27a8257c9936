#include "polytune/engine/communicator.h"

#include <cstdlib>
#include <optional>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef POLYTUNE_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <torch/version.h>

#include "absl/strings/str_cat.h"

namespace polytune::engine {
namespace {

// libtorch 2.x moved the Gloo and NCCL process groups under c10d::Backend.
#if TORCH_VERSION_MAJOR >= 2
using GroupPtr = c10::intrusive_ptr<c10d::Backend>;
#else
using GroupPtr = c10::intrusive_ptr<c10d::ProcessGroup>;
#endif

// A collective that finished (or failed) before it was returned.
class CompletedCollective : public PendingCollective {
 public:
  explicit CompletedCollective(absl::Status status) : status_(std::move(status)) {}
  absl::Status Wait() override { return status_; }

 private:
  absl::Status status_;
};

class SingleProcessCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::unique_ptr<PendingCollective> StartAllReduceSum(const at::Tensor&) override {
    return std::make_unique<CompletedCollective>(absl::OkStatus());
  }
  absl::Status Barrier() override { return absl::OkStatus(); }
};

absl::Status Failed(int rank, const std::exception& e) {
  return absl::UnavailableError(
      absl::StrCat("rank ", rank, ": all-reduce failed (a peer rank probably exited): ", e.what()));
}

// A c10d work item: Gloo runs it on its own threads, NCCL on its stream.
class PendingWork : public PendingCollective {
 public:
  PendingWork(c10::intrusive_ptr<c10d::Work> work, int rank, std::chrono::milliseconds timeout)
      : work_(std::move(work)), rank_(rank), timeout_(timeout) {}
  absl::Status Wait() override {
    try {
      if (!work_->wait(timeout_)) return absl::DeadlineExceededError("all-reduce did not complete in time");
    } catch (const std::exception& e) {
      return Failed(rank_, e);
    }
    return absl::OkStatus();
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  int rank_;
  std::chrono::milliseconds timeout_;
};

class ProcessGroupCommunicator : public Communicator {
 public:
  ProcessGroupCommunicator(c10::intrusive_ptr<c10d::Store> store, GroupPtr group, int rank, int world,
                           std::chrono::milliseconds timeout, std::optional<at::Device> collective_device)
      : store_(std::move(store)),
        group_(std::move(group)),
        rank_(rank),
        world_(world),
        timeout_(timeout),
        collective_device_(collective_device) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  std::unique_ptr<PendingCollective> StartAllReduceSum(const at::Tensor& tensor) override {
    // NCCL reduces device tensors only: CPU statistics travel through the rank's GPU (and
    // synchronously: they are a few scalars).
    if (collective_device_ && tensor.device() != *collective_device_) {
      at::Tensor staged = tensor.to(*collective_device_);
      absl::Status st = StartAllReduceSum(staged)->Wait();
      if (st.ok()) tensor.copy_(staged.to(tensor.device()));
      return std::make_unique<CompletedCollective>(std::move(st));
    }
    try {
      std::vector<at::Tensor> tensors = {tensor};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
      return std::make_unique<PendingWork>(group_->allreduce(tensors, opts), rank_, timeout_);
    } catch (const std::exception& e) {
      return std::make_unique<CompletedCollective>(Failed(rank_, e));
    }
  }

  absl::Status Barrier() override {
    at::Tensor t = at::zeros({1}, at::kFloat);
    return AllReduceSum(t);
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  GroupPtr group_;
  int rank_, world_;
  std::chrono::milliseconds timeout_;
  std::optional<at::Device> collective_device_;
};

}  // namespace

std::unique_ptr<Communicator> MakeSingleProcessCommunicator() { return std::make_unique<SingleProcessCommunicator>(); }

absl::StatusOr<std::unique_ptr<Communicator>> ConnectProcessGroup(const RendezvousOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
    return absl::InvalidArgumentError(absl::StrCat("invalid rank ", o.rank, " for world size ", o.world_size));
  if (o.world_size == 1 && !o.cuda) return MakeSingleProcessCommunicator();
  try {
    c10d::TCPStoreOptions store_opts;
    store_opts.port = static_cast<uint16_t>(o.master_port);
    store_opts.isServer = o.rank == 0;
    store_opts.numWorkers = o.world_size;
    store_opts.waitWorkers = true;
    store_opts.timeout = o.timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, store_opts);
    GroupPtr group;
    std::optional<at::Device> collective_device;
    if (o.cuda) {
#ifdef POLYTUNE_WITH_NCCL
      // Surface a dead peer as an error instead of a hang (name differs across versions).
      setenv("NCCL_ASYNC_ERROR_HANDLING", "1", 0);
      setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 0);
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = o.timeout;
      group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, o.rank, o.world_size, opts);
      collective_device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(o.device_index));
#else
      return absl::FailedPreconditionError(
          "this build of polytune has no NCCL support; rebuild against a CUDA libtorch");
#endif
    } else {
      auto opts = c10d::ProcessGroupGloo::Options::create();
      opts->timeout = o.timeout;
      std::string local = o.local_addr;
      if (local.empty() && (o.master_addr == "127.0.0.1" || o.master_addr == "localhost")) local = "127.0.0.1";
      opts->devices.push_back(local.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                            : c10d::ProcessGroupGloo::createDeviceForHostname(local));
      group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, o.rank, o.world_size, opts);
    }
    return std::unique_ptr<Communicator>(
        new ProcessGroupCommunicator(store, group, o.rank, o.world_size, o.timeout, collective_device));
  } catch (const std::exception& e) {
    // Rank 0 serves the store: a taken port is not a timeout, and the job can be placed again.
    if (o.rank == 0 && std::string(e.what()).find("Address already in use") != std::string::npos)
      return absl::AlreadyExistsError(absl::StrCat("rendezvous port ", o.master_port, " on ", o.master_addr,
                                                   " is taken by another process: ", e.what()));
    return absl::UnavailableError(absl::StrCat("rank ", o.rank, " could not join the process group at ", o.master_addr,
                                               ":", o.master_port, " within ", o.timeout.count() / 1000,
                                               " s: ", e.what()));
  }
}

}  // namespace polytune::engine
