// Token-weighted evaluation: loss, perplexity and next-token accuracy, overall and per
// language. Ranks evaluate disjoint shares and sum their statistics.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "polytune/engine/communicator.h"
#include "polytune/engine/llama_model.h"
#include "polytune/engine/token_dataset.h"

namespace polytune::engine {

struct EvalFigures {
  double loss = 0;  // mean over target tokens
  double ppl = 0;
  double accuracy = 0;
  int64_t tokens = 0;
};

struct EvalResult {
  EvalFigures overall;
  std::map<std::string, EvalFigures> languages;
  nlohmann::json ToJson() const;
};

absl::StatusOr<EvalResult> Evaluate(const LlamaModel& model, const TokenDataset& data, int64_t batch_size,
                                    Communicator& comm);

}  // namespace polytune::engine
