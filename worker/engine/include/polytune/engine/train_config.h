// The training job configuration (YAML), documented in docs/job-spec.md.
//
// Parsing is strict: an unknown key or a value of the wrong type or range is an error that
// names the file, the dotted key and the line. Relative paths resolve against the
// directory of the YAML file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/engine/lora.h"
#include "polytune/engine/model_loader.h"

namespace polytune::engine {

enum class LrSchedule { kCosine, kLinear, kConstant };

struct TrainConfig {
  struct Model {
    std::string path;
    Quantization quantization = Quantization::kNf4;
    bool double_quant = true;
  } model;
  LoraSettings lora;
  std::string init_adapter;  // empty: fresh adapter
  struct Data {
    std::string train;
    std::string eval;             // empty: no evaluation
    std::string format = "auto";  // auto | messages | alpaca | text | tokens
    int64_t max_seq_len = 1024;
    std::string tokenizer;      // folder with tokenizer.json; empty: model.path
    std::string chat_template;  // built-in name; empty: the tokenizer's own
    bool train_on_inputs = false;
    bool packing = false;
  } data;
  struct Training {
    int64_t max_steps = 0;  // 0: derived from epochs
    int64_t epochs = 1;
    int64_t micro_batch_size = 4;
    int64_t grad_accum_steps = 1;
    double lr = 2e-4;
    LrSchedule lr_schedule = LrSchedule::kCosine;
    int64_t warmup_steps = 0;
    double weight_decay = 0.0;
    double max_grad_norm = 1.0;  // 0: no clipping
    double adam_beta1 = 0.9;
    double adam_beta2 = 0.999;
    double adam_epsilon = 1e-8;
    uint64_t seed = 42;
    bool gradient_checkpointing = true;
    int64_t eval_every = 0;        // 0: only at the start and the end
    int64_t checkpoint_every = 0;  // 0: only at the end
    std::string device = "auto";   // auto | cpu | cuda | cuda:N
    int64_t num_threads = 0;       // 0: all cores divided among local ranks
  } training;
  std::string output_dir;
};

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path);
// Parses YAML text; `source` names it in errors and `base_dir` resolves relative paths.
absl::StatusOr<TrainConfig> ParseTrainConfig(const std::string& yaml_text, const std::string& source,
                                             const std::string& base_dir);

const char* LrScheduleName(LrSchedule schedule);

}  // namespace polytune::engine
