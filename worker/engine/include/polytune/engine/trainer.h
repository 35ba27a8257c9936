// The QLoRA training loop of one data-parallel rank.
//
// Each optimizer step takes the global batch from BatchSchedule (the same examples whatever
// the world size), gives every rank a contiguous share split into micro-batches, normalises
// the loss by the target-token count of the whole step (all micro-batches, all ranks), sums
// LoRA gradients across ranks in one flat buffer, clips by global norm and applies AdamW.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "polytune/common/metrics_record.h"
#include "polytune/engine/communicator.h"
#include "polytune/engine/token_dataset.h"
#include "polytune/engine/train_config.h"

namespace polytune::engine {

struct TrainRunOptions {
  bool resume = false;
  std::string resume_dir;  // empty with resume: the latest checkpoint in output_dir
  int local_rank = 0;      // picks the CUDA device on multi-GPU hosts
  bool progress = true;    // rank 0 prints a progress line to stderr
  // Called on rank 0 with every metrics record (step or eval), after it is written.
  std::function<void(const MetricsRecord&)> on_record;
  // Test seam, called on every rank before each optimizer step with the step's index (fault
  // injection lives in the test binaries that set it; production never does).
  std::function<void(int64_t step)> before_step;
  // Called on rank 0 after each checkpoint is committed, with its directory.
  std::function<void(const std::string&)> on_checkpoint;
  // Polled on every rank once per optimizer step (before its all-reduce): true asks the run to
  // stop after that step with a checkpoint of it (preemption, drain). Must be cheap and
  // async-signal safe to set (a signal handler flips it).
  std::function<bool()> stop_requested;
};

struct TrainSummary {
  // Stopped on request after `steps` optimizer steps, with a checkpoint of that step; no
  // adapter was written and the run resumes from the checkpoint.
  bool preempted = false;
  int64_t steps = 0;
  double final_loss = 0;
  std::string adapter_dir;
};

// The tokenizer and chat template a config's data needs (none for pre-tokenised data).
struct TextPipeline {
  std::unique_ptr<text::Tokenizer> tokenizer;
  std::optional<text::ChatTemplate> chat_template;
  DatasetOptions Options(const TrainConfig& config, int64_t vocab_size) const;
};
absl::StatusOr<TextPipeline> LoadTextPipeline(const TrainConfig& config);

absl::StatusOr<TrainSummary> RunTraining(const TrainConfig& config, Communicator& comm, const TrainRunOptions& options);

// The torch device a config asks for ("auto": CUDA when present).
absl::StatusOr<at::Device> ResolveDevice(const std::string& name, int local_rank);

}  // namespace polytune::engine
