// Pre-tokenised JSONL datasets and the order in which training visits them.
//
// One example per line: {"input_ids": [...], "labels": [...] (optional, -100 masks a
// position), "lang": "es" (optional)}. Labels are aligned with input_ids; the model predicts
// labels[t + 1] from position t, as Hugging Face's causal-LM loss does.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "polytune/spec/job_spec.h"
#include "polytune/text/chat_template.h"
#include "polytune/text/examples.h"
#include "polytune/text/tokenizer.h"

namespace polytune::engine {

constexpr int64_t kIgnoreIndex = -100;

struct TokenExample {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;
  int32_t language = 0;  // index into TokenDataset::languages
  // Positions that contribute to the loss (labels[t] != -100 for t >= 1).
  int64_t TargetCount() const;
};

struct TokenDataset {
  std::string path;
  std::vector<TokenExample> examples;
  std::vector<std::string> languages;  // sorted; "und" for lines without "lang"
  // What loading saw, for `polytune data inspect`.
  std::map<std::string, int64_t> format_counts;
  int64_t truncated = 0;                     // examples cut to max_seq_len
  std::vector<int64_t> untruncated_lengths;  // token counts before truncation
};

struct DatasetOptions {
  int64_t max_seq_len = 1024;
  int64_t vocab_size = 0;
  text::DataFormat format = text::DataFormat::kTokens;
  const text::Tokenizer* tokenizer = nullptr;         // needed for text formats
  const text::ChatTemplate* chat_template = nullptr;  // needed for messages / alpaca
  bool train_on_inputs = false;
};

// Reads, renders, tokenises and validates a JSONL file. Sequences longer than max_seq_len
// are truncated; ids must lie in [0, vocab_size). A malformed line is an error naming file,
// line and field.
absl::StatusOr<TokenDataset> LoadDataset(const std::string& path, const DatasetOptions& options);

// Pre-tokenised data only (format tokens).
absl::StatusOr<TokenDataset> LoadTokenDataset(const std::string& path, int64_t max_seq_len, int64_t vocab_size);

// A padded micro-batch: input_ids padded with 0, labels with -100.
struct Batch {
  at::Tensor input_ids;                  // int64 [rows, seq]
  at::Tensor labels;                     // int64 [rows, seq]
  at::Tensor position_ids;               // int64 [rows, seq]; restart at 0 for every example
  at::Tensor segment_ids;                // packed only: int64 [rows, seq], -1 on padding
  std::vector<int64_t> token_examples;   // per token: example id (stream position), -1 on padding
  std::vector<int64_t> token_positions;  // per token: index within its example
  std::vector<int32_t> languages;        // per example, in input order
  int64_t rows = 0;
  int64_t tokens = 0;  // real (unpadded) input tokens
};

// Unpacked (pack_len 0): one example per row, right-padded to the longest. Packed: examples
// in as few rows of at most pack_len tokens as first-fit decreasing finds, balanced longest
// first into the emptiest row (rows are padded to the fullest); positions restart per example,
// segment ids keep examples from attending to each other, and each example's first label is
// masked (its predecessor belongs to another example), so the loss equals the unpacked one.
Batch Collate(const TokenDataset& data, const std::vector<int64_t>& example_indices,
              const std::vector<int64_t>& example_ids, int64_t pack_len = 0);

// The deterministic visiting order: an endless stream of epochs, each a seeded permutation
// of the dataset. Step k's global batch is stream positions [k*B, (k+1)*B), so the set of
// examples in a step depends only on the seed and the global batch size B, never on how it
// is split into ranks and micro-batches.
//
// With language-balanced sampling an epoch is a round of LanguageRoundCounts slots per
// language (language_sampling.h): the round's slots are a seeded permutation, and the slots of
// language l walk through l's own seeded permutations of its examples across rounds. Every
// position's example is a pure function of (seed, position), so resuming at any step and any
// world size sees the same stream.
class BatchSchedule {
 public:
  BatchSchedule(int64_t num_examples, int64_t global_batch_size, uint64_t seed);
  BatchSchedule(const TokenDataset& data, int64_t global_batch_size, uint64_t seed,
                const spec::LanguageSampling& sampling);
  int64_t global_batch_size() const { return global_batch_; }
  // Dataset index of stream position `pos`.
  int64_t ExampleAt(int64_t pos) const;
  double EpochAt(int64_t step) const;  // fractional epoch (round) after `step` steps
  // Steps needed for `epochs` passes (the last step may wrap into the next epoch).
  int64_t StepsForEpochs(int64_t epochs) const;
  int64_t round_size() const { return round_; }
  // Examples per language index in one round (empty without sampling).
  const std::vector<int64_t>& round_counts() const { return counts_; }

 private:
  const std::vector<int64_t>& Permutation(int64_t epoch) const;
  const std::vector<int64_t>& CachedPermutation(int64_t key_a, int64_t key_b, int64_t n, uint64_t salt) const;
  int64_t n_;
  int64_t round_;
  int64_t global_batch_;
  uint64_t seed_;
  bool sampled_ = false;
  std::vector<int64_t> counts_, offsets_;            // per language: slots per round, first slot
  std::vector<std::vector<int64_t>> lang_examples_;  // per language: its dataset indices
  mutable std::map<int64_t, std::vector<int64_t>> permutations_;
  mutable std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> keyed_permutations_;
};

}  // namespace polytune::engine
