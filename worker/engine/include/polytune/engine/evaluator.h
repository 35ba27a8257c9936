// Token-weighted evaluation: loss, perplexity and next-token accuracy, overall and per
// language. Ranks evaluate disjoint shares and sum their statistics.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "polytune/common/metrics_record.h"
#include "polytune/engine/communicator.h"
#include "polytune/engine/llama_model.h"
#include "polytune/engine/token_dataset.h"

namespace polytune::engine {

using EvalFigures = polytune::EvalFigures;  // loss, ppl, accuracy, tokens

struct EvalResult {
  EvalFigures overall;
  std::map<std::string, EvalFigures> languages;
  nlohmann::json ToJson() const;
  EvalMetrics ToMetrics(int64_t step, double epoch) const;
};

absl::StatusOr<EvalResult> Evaluate(const LlamaModel& model, const TokenDataset& data, int64_t batch_size,
                                    Communicator& comm);

}  // namespace polytune::engine
