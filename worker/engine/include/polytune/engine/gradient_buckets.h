// Data-parallel gradient reduction overlapped with backward, as PyTorch DDP does it.
//
// The LoRA parameters are grouped into fixed buckets of about `bucket_bytes`, in the order
// backward finishes them (the last decoder layer first). During the backward pass of a step's
// last micro-batch, a hook on each parameter's gradient accumulator copies the finished
// gradient into its bucket; a bucket whose gradients are all in starts its all-reduce at once,
// while backward goes on with the earlier layers. Buckets start strictly in order, so every
// rank starts the same collectives in the same order. The last bucket also carries the step's
// loss and stop flag (no extra collective) and starts when backward has returned.
//
// Each reduced gradient is the same elementwise sum as ReduceGradients' single buffer; for two
// ranks the two are bit-identical (a + b is exact-commutative). With more ranks, how the
// transport splits a buffer decides the order of the sum, so a different bucket size may round
// differently; the same configuration always gives the same bits.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "polytune/engine/communicator.h"
#include "polytune/engine/train_step.h"

namespace torch::autograd {
struct Node;
}

namespace polytune::engine {

// The order buckets are filled in: parameters named "...layers.N..." by N descending (backward
// reaches the last layer first), then the rest; ties keep their given order. Returns indices.
std::vector<size_t> BackwardReadyOrder(const std::vector<std::string>& names);

class OverlappedGradientReducer {
 public:
  // `params`: name and (leaf) tensor of every trainable parameter; `comm` must outlive this.
  OverlappedGradientReducer(const std::vector<std::pair<std::string, at::Tensor>>& params, Communicator& comm,
                            int64_t bucket_bytes);
  ~OverlappedGradientReducer();
  OverlappedGradientReducer(const OverlappedGradientReducer&) = delete;
  OverlappedGradientReducer& operator=(const OverlappedGradientReducer&) = delete;

  // Call right before the backward pass whose end completes the step's gradients (the last
  // micro-batch's): from then on, gradients that backward finishes go to their buckets.
  void Arm();
  // After that backward: starts the buckets still waiting, waits for all, and points every
  // parameter's .grad at its reduced values. Returns the summed loss and stop flag.
  absl::StatusOr<ReducedStep> Finish(double local_loss_sum, bool stop_requested);

  size_t bucket_count() const;
  // Buckets the last step started from inside backward (the overlap), for tests and benches.
  int64_t started_during_backward() const;

 private:
  struct Slot {
    size_t bucket = 0;
    int64_t offset = 0;  // in the bucket, in elements
  };
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    int64_t numel = 0;           // gradients only; the last bucket has two more (loss, stop)
    at::Tensor buffer;           // fp32, fresh each step (the gradients end up as views of it)
    int64_t ready = 0;
    std::unique_ptr<PendingCollective> pending;
  };
  class AccumulatedHook;

  // Called by the hook once `param`'s gradient for this step is complete in .grad.
  void OnGradientReady(size_t param);
  void CopyIn(size_t param) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartReadyBuckets() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Communicator& comm_;
  std::vector<at::Tensor> params_;
  std::vector<Slot> slots_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // hooks live on these
  std::vector<uintptr_t> hook_keys_;

  mutable absl::Mutex mu_;
  std::vector<Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> copied_ ABSL_GUARDED_BY(mu_);
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  size_t next_to_start_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t started_during_backward_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace polytune::engine
