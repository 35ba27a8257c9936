// Training checkpoints: output_dir/checkpoints/step-K/ holds a PEFT adapter plus the trainer
// state needed to continue bit-for-bit: AdamW moments (optimizer.safetensors) and
// trainer_state.json (step, schedule, seed, data position, batch geometry). Written to a
// staging folder, fsynced and renamed, so a half-written checkpoint never has its final name.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "polytune/engine/adamw.h"
#include "polytune/engine/llama_model.h"

namespace polytune::engine {

struct TrainerState {
  int64_t step = 0;  // optimizer steps completed
  int64_t total_steps = 0;
  int64_t global_batch_size = 0;
  uint64_t seed = 0;
  int64_t data_position = 0;  // stream position of the next example
  double epoch = 0;
  double last_lr = 0;
  // What the run was (spec::RunDefiningKeys plus the datasets' sha256): a checkpoint of
  // another run is refused on resume, naming the key that differs. Empty in checkpoints
  // written before it was recorded.
  std::map<std::string, std::string> run;
  // spec::EarlyStoppingTracker state after this step's evaluation (null without early stopping).
  nlohmann::json early_stopping;
  nlohmann::json ToJson() const;
  static absl::StatusOr<TrainerState> FromJson(const nlohmann::json& j, const std::string& source);
};

std::string CheckpointDirName(int64_t step);  // "step-K"

// `extra_files` (name -> contents) go into the checkpoint too (the run's sample generations, for
// reports of cluster jobs).
absl::Status SaveCheckpoint(const std::string& dir, const LlamaModel& model, const std::string& base_model_path,
                            AdamW& optimizer, const TrainerState& state,
                            const std::map<std::string, std::string>& extra_files = {});

// Restores LoRA weights and optimizer moments into an already-built model/optimizer (same
// LoRA layout) and returns the trainer state.
absl::StatusOr<TrainerState> LoadCheckpoint(const std::string& dir, LlamaModel* model, AdamW* optimizer);

// The complete checkpoint with the highest step under output_dir/checkpoints, if any.
std::optional<std::string> LatestCheckpoint(const std::string& output_dir);

}  // namespace polytune::engine
