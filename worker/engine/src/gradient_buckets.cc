#include "polytune/engine/gradient_buckets.h"

#include <algorithm>
#include <cstdlib>

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

namespace polytune::engine {

std::vector<size_t> BackwardReadyOrder(const std::vector<std::string>& names) {
  auto layer_of = [](const std::string& name) -> int64_t {
    const size_t at = name.find("layers.");
    if (at == std::string::npos) return -1;
    return std::strtoll(name.c_str() + at + 7, nullptr, 10);
  };
  std::vector<size_t> order(names.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return layer_of(names[a]) > layer_of(names[b]); });
  return order;
}

// Runs after a parameter's AccumulateGrad node has written .grad: the point where DDP's reducer
// hooks in too. (A hook on the tensor would fire before accumulation, and also inside the
// recompute of an activation-checkpointed layer, whose autograd::grad call lists the
// parameters as inputs; the accumulator's post-hook fires once, in the outer backward.)
class OverlappedGradientReducer::AccumulatedHook : public torch::autograd::FunctionPostHook {
 public:
  AccumulatedHook(OverlappedGradientReducer* reducer, size_t param) : reducer_(reducer), param_(param) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    reducer_->OnGradientReady(param_);
    return outputs;
  }

 private:
  OverlappedGradientReducer* reducer_;
  size_t param_;
};

OverlappedGradientReducer::OverlappedGradientReducer(const std::vector<std::pair<std::string, at::Tensor>>& params,
                                                     Communicator& comm, int64_t bucket_bytes)
    : comm_(comm) {
  std::vector<std::string> names;
  for (const auto& [name, p] : params) {
    names.push_back(name);
    params_.push_back(p);
  }
  slots_.resize(params_.size());
  absl::MutexLock lock(&mu_);
  copied_.assign(params_.size(), false);
  const int64_t cap = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)));
  for (size_t i : BackwardReadyOrder(names)) {
    if (buckets_.empty() || (buckets_.back().numel > 0 && buckets_.back().numel + params_[i].numel() > cap))
      buckets_.emplace_back();
    Bucket& b = buckets_.back();
    slots_[i] = Slot{buckets_.size() - 1, b.numel};
    b.params.push_back(i);
    b.numel += params_[i].numel();
  }
  if (buckets_.empty()) buckets_.emplace_back();  // the loss and stop flag still travel
  for (size_t i = 0; i < params_.size(); ++i) {
    TORCH_CHECK(params_[i].is_leaf() && params_[i].requires_grad(), "parameter ", names[i], " is not trainable");
    accumulators_.push_back(torch::autograd::impl::grad_accumulator(params_[i]));
    hook_keys_.push_back(accumulators_.back()->add_post_hook(std::make_unique<AccumulatedHook>(this, i)));
  }
}

OverlappedGradientReducer::~OverlappedGradientReducer() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
  absl::MutexLock lock(&mu_);
  for (Bucket& b : buckets_)
    if (b.pending) b.pending->Wait().IgnoreError();  // the buffers must outlive the transport's use
}

size_t OverlappedGradientReducer::bucket_count() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

int64_t OverlappedGradientReducer::started_during_backward() const {
  absl::MutexLock lock(&mu_);
  return started_during_backward_;
}

void OverlappedGradientReducer::Arm() {
  absl::MutexLock lock(&mu_);
  const at::TensorOptions fp32 =
      at::TensorOptions().dtype(at::kFloat).device(params_.empty() ? at::Device(at::kCPU) : params_[0].device());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    if (bucket.pending) bucket.pending->Wait().IgnoreError();  // a step abandoned halfway
    bucket.pending.reset();
    bucket.ready = 0;
    bucket.buffer = at::empty({bucket.numel + (b + 1 == buckets_.size() ? 2 : 0)}, fp32);
  }
  std::fill(copied_.begin(), copied_.end(), false);
  next_to_start_ = 0;
  started_during_backward_ = 0;
  armed_ = true;
}

void OverlappedGradientReducer::CopyIn(size_t param) {
  const at::Tensor& p = params_[param];
  Bucket& b = buckets_[slots_[param].bucket];
  at::Tensor dst = b.buffer.slice(0, slots_[param].offset, slots_[param].offset + p.numel());
  if (p.grad().defined())
    dst.copy_(p.grad().reshape({-1}));
  else
    dst.zero_();  // no gradient reached it this step: it contributes zeros, as in ReduceGradients
  copied_[param] = true;
  ++b.ready;
}

void OverlappedGradientReducer::StartReadyBuckets() {
  // The last bucket waits for Finish: it carries the loss and stop flag.
  while (next_to_start_ + 1 < buckets_.size() &&
         buckets_[next_to_start_].ready == static_cast<int64_t>(buckets_[next_to_start_].params.size())) {
    Bucket& b = buckets_[next_to_start_++];
    b.pending = comm_.StartAllReduceSum(b.buffer);
    ++started_during_backward_;
  }
}

void OverlappedGradientReducer::OnGradientReady(size_t param) {
  at::NoGradGuard no_grad;
  absl::MutexLock lock(&mu_);
  if (!armed_ || copied_[param]) return;
  CopyIn(param);
  StartReadyBuckets();
}

absl::StatusOr<ReducedStep> OverlappedGradientReducer::Finish(double local_loss_sum, bool stop_requested) {
  at::NoGradGuard no_grad;
  absl::MutexLock lock(&mu_);
  TORCH_CHECK(armed_, "OverlappedGradientReducer::Finish without Arm");
  armed_ = false;
  for (size_t i = 0; i < params_.size(); ++i)
    if (!copied_[i]) CopyIn(i);
  Bucket& last = buckets_.back();
  last.buffer[last.numel] = local_loss_sum;
  last.buffer[last.numel + 1] = stop_requested ? 1.0 : 0.0;
  for (; next_to_start_ < buckets_.size(); ++next_to_start_)
    buckets_[next_to_start_].pending = comm_.StartAllReduceSum(buckets_[next_to_start_].buffer);
  absl::Status status;
  for (Bucket& b : buckets_) {
    absl::Status st = b.pending->Wait();
    b.pending.reset();
    if (status.ok()) status = st;
  }
  if (!status.ok()) return status;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    const Bucket& b = buckets_[slots_[i].bucket];
    p.mutable_grad() =
        b.buffer.slice(0, slots_[i].offset, slots_[i].offset + p.numel()).view(p.sizes()).to(p.scalar_type());
  }
  at::Tensor extras = last.buffer.slice(0, last.numel, last.numel + 2).cpu().to(at::kDouble);
  return ReducedStep{extras[0].item<double>(), extras[1].item<double>() > 0.5};
}

}  // namespace polytune::engine
