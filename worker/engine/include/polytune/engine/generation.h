// Text generation with a KV cache: greedy, or sampling with temperature, top-k and top-p.
//
// Prompts of different lengths run as one batch, left-padded (padding is never attended to, and
// positions count from each prompt's own first token), so a prompt's greedy output does not
// depend on which other prompts share its batch. Rows that finish leave the batch.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "polytune/engine/llama_model.h"

namespace polytune::engine {

struct GenerationOptions {
  int64_t max_new_tokens = 256;
  double temperature = 0.0;  // 0: greedy (argmax; the lowest id on ties)
  int64_t top_k = 0;         // 0: no limit
  double top_p = 1.0;        // nucleus: the smallest set of most likely tokens with mass >= top_p
  uint64_t seed = 0;
  std::vector<int64_t> eos_ids;           // generation ends after one of these (not included)
  std::vector<std::string> stop_strings;  // ... or once the decoded text contains one (cut before it)
  absl::Status Validate() const;
};

enum class FinishReason { kEos, kStopString, kLength };
const char* FinishReasonName(FinishReason reason);

struct Generation {
  std::vector<int64_t> tokens;  // generated ids, without the EOS that ended them
  FinishReason finish = FinishReason::kLength;
  std::string text;  // decoded output, cut before a stop string ("" without a decoder)
};

// Decodes generated ids to text (stop strings and Generation::text need one).
using TokenDecoder = std::function<std::string(const std::vector<int64_t>&)>;

// Generates a continuation of each prompt (token ids, each non-empty). Sampling draws from a
// stream seeded by (options.seed, stream_ids[i]) (default: i), so a prompt's sample depends on
// its own stream id, not on its batch neighbours.
absl::StatusOr<std::vector<Generation>> Generate(const LlamaModel& model,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const GenerationOptions& options, const TokenDecoder& decode = nullptr,
                                                 const std::vector<uint64_t>& stream_ids = {});

// Picks the next token from one row of logits (exposed for tests): argmax when temperature is
// 0, else a draw with `uniform` in [0, 1) from the tempered, top-k and top-p filtered softmax.
int64_t PickToken(const float* logits, int64_t vocab, const GenerationOptions& options, double uniform);

}  // namespace polytune::engine
