// The pieces of one optimizer step, in the order the trainer calls them (llm.c style):
//   PlanStep -> ForwardBackward per micro-batch -> ReduceGradients -> ClipGradNorm ->
//   optimizer update -> record.
// Each is small, and the ones with logic of their own are tested on their own.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "polytune/engine/communicator.h"
#include "polytune/engine/llama_model.h"
#include "polytune/engine/token_dataset.h"

namespace polytune::engine {

// Which examples a step trains on and how its loss is normalised. Every rank computes the
// same plan (no communication): the global batch comes from BatchSchedule, so it is the same
// whatever the world size.
struct StepPlan {
  int64_t step = 0;
  int64_t first_position = 0;  // stream position of the step's first example
  int64_t global_batch = 0;
  int64_t per_rank = 0;  // micro_batch_size x grad_accum_steps
  int64_t micro_batch_size = 0;
  int64_t target_tokens = 0;  // summed over the whole global batch
  int64_t tokens = 0;
  // Per-language loss weights by language index (empty: every token weighs 1) and the
  // step's target tokens per language.
  std::vector<double> language_weights;
  double weighted_targets = 0;  // sum over the step's target tokens of their language's weight
  std::vector<int64_t> targets_by_language;
  // The loss is the (weighted) sum over every target token of the step divided by this, so it
  // does not depend on how the batch is split into micro-batches and ranks.
  double Normaliser() const {
    if (language_weights.empty()) return static_cast<double>(std::max<int64_t>(1, target_tokens));
    return weighted_targets > 0 ? weighted_targets : 1.0;
  }
  double WeightOf(int32_t language) const { return language_weights.empty() ? 1.0 : language_weights[language]; }
};

StepPlan PlanStep(const TokenDataset& train, const BatchSchedule& schedule, int64_t step, int64_t micro_batch_size,
                  int64_t grad_accum_steps, int64_t world_size, const std::vector<double>& language_weights = {});

// training.language_weights resolved against the training data's languages (TokenDataset::
// languages order); empty for `none`.
std::vector<double> ResolveLanguageWeights(const spec::LanguageWeights& weights, const TokenDataset& train);

// Stream positions of micro-batch `micro` of `rank`: a contiguous share of the global batch.
std::vector<int64_t> MicroBatchPositions(const StepPlan& plan, int64_t rank, int64_t micro);

struct MicroBatchOptions {
  uint64_t seed = 0;  // dropout keys
  bool gradient_checkpointing = true;
  bool checkpoint_keeps_projections = false;  // ForwardOptions::checkpoint_keeps_projections
  int64_t pack_len = 0;                       // 0: no packing
};

// Forward and backward of one micro-batch, gradients accumulated into the LoRA parameters
// scaled by 1 / plan.Normaliser(), each target token's loss weighted by its language's weight.
// Returns the micro-batch's summed (weighted, unnormalised) loss.
double ForwardBackward(LlamaModel& model, const TokenDataset& train, const BatchSchedule& schedule,
                       const StepPlan& plan, const std::vector<int64_t>& positions, const MicroBatchOptions& options);

// LoRA gradients flattened into one fp32 buffer (plus trailing scalars) for one all-reduce.
class FlatGradients {
 public:
  explicit FlatGradients(std::vector<at::Tensor> params) : params_(std::move(params)) {}
  at::Tensor Pack(const std::vector<double>& extras) const;
  // Writes the reduced buffer back into .grad and returns the trailing scalars.
  std::vector<double> Unpack(const at::Tensor& flat, size_t n_extras);

 private:
  std::vector<at::Tensor> params_;
};

struct ReducedStep {
  double loss_sum = 0;  // the step's global loss sum
  bool stop = false;    // some rank was asked to stop after this step
};
// Sums every rank's gradients, local loss and stop request across ranks in one all-reduce, so
// every rank learns in the same step that one of them was asked to stop (no extra collective).
absl::StatusOr<ReducedStep> ReduceGradients(FlatGradients& flat, Communicator& comm, double local_loss_sum,
                                            bool stop_requested = false);

// Global-norm clipping as torch.nn.utils.clip_grad_norm_ (eps 1e-6): returns the norm before
// clipping; scales the gradients down when it exceeds `max_norm` (0: no clipping).
double ClipGradNorm(const std::vector<at::Tensor>& params, double max_norm);

void ZeroGradients(std::vector<at::Tensor>& params);

}  // namespace polytune::engine
