// AdamW with decoupled weight decay, matching torch.optim.AdamW (single-tensor path).
#pragma once

#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace polytune::engine {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> params, AdamWOptions options);
  // One update with learning rate `lr` from each parameter's .grad() (a missing grad counts
  // as zero). Moments are fp32 on the parameter's device.
  void Step(double lr);
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t n) { step_count_ = n; }
  std::vector<at::Tensor>& exp_avg() { return exp_avg_; }
  std::vector<at::Tensor>& exp_avg_sq() { return exp_avg_sq_; }

 private:
  std::vector<at::Tensor> params_;
  AdamWOptions options_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  int64_t step_count_ = 0;
};

}  // namespace polytune::engine
