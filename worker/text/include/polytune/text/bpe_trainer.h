// Learns a byte-level BPE tokenizer (Llama 3 style pre-tokenisation, special tokens for the
// llama3 chat template) and writes it as Hugging Face tokenizer.json + tokenizer_config.json.
#pragma once

#include <string>
#include <vector>

#include <memory>

#include "absl/status/statusor.h"
#include "polytune/text/tokenizer.h"

namespace polytune::text {

struct BpeTrainOptions {
  int64_t vocab_size = 512;  // total, special tokens included; at least 256 + specials
  int64_t min_frequency = 2;
};

// The special tokens a trained tokenizer gets, in id order after the learned vocabulary.
const std::vector<std::string>& TrainedSpecialTokens();

absl::Status TrainByteLevelBpe(const std::vector<std::string>& texts, const BpeTrainOptions& options,
                               const std::string& out_dir);

// Reads the corpus (ReadCorpusTexts), trains, writes into out_dir and loads the result.
// `num_texts`, when given, receives how many texts were learned from.
absl::StatusOr<std::unique_ptr<Tokenizer>> TrainTokenizerFromCorpus(const std::string& corpus_path,
                                                                    const BpeTrainOptions& options,
                                                                    const std::string& out_dir,
                                                                    size_t* num_texts = nullptr);

// Every text field of a JSONL file in any supported format (message contents, alpaca
// fields, "text"), or the lines themselves when the file is not JSONL.
absl::StatusOr<std::vector<std::string>> ReadCorpusTexts(const std::string& path);

}  // namespace polytune::text
