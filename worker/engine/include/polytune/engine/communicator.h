// Collective communication between the data-parallel ranks of one job.
//
// One interface for every transport: a single process (world size 1), or a c10d process
// group (Gloo for CPU tensors, NCCL for CUDA tensors) formed through a TCPStore at
// master_addr:master_port. The control plane uses the same rendezvous fields to join ranks
// on different machines.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"

namespace polytune::engine {

// A collective in flight.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  // Blocks until the collective completes; fails (rather than hanging) when a peer is gone or
  // it exceeds the communicator's timeout.
  virtual absl::Status Wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In-place sum across ranks. Fails (rather than hanging) when a peer is gone or the
  // collective exceeds the timeout.
  absl::Status AllReduceSum(at::Tensor& tensor) { return StartAllReduceSum(tensor)->Wait(); }
  // Starts an in-place sum and returns at once, so work can go on while it travels. `tensor`
  // (contiguous) must stay alive and untouched until Wait() returns. Every rank must start the
  // same collectives, with the same sizes, in the same order.
  virtual std::unique_ptr<PendingCollective> StartAllReduceSum(const at::Tensor& tensor) = 0;
  virtual absl::Status Barrier() = 0;
};

std::unique_ptr<Communicator> MakeSingleProcessCommunicator();

struct RendezvousOptions {
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int rank = 0;
  int world_size = 1;
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
  bool cuda = false;     // NCCL instead of Gloo (needs a CUDA build of libtorch)
  int device_index = 0;  // the rank's CUDA device, for NCCL
  // Address this rank's Gloo device binds to; empty picks 127.0.0.1 for a loopback master
  // and the host's default interface otherwise.
  std::string local_addr;
};

absl::StatusOr<std::unique_ptr<Communicator>> ConnectProcessGroup(const RendezvousOptions& options);

}  // namespace polytune::engine
