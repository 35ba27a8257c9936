// Native reader for Hugging Face `tokenizer.json` BPE tokenizers (no Python):
//   * byte-level BPE (GPT-2, Llama 3, Qwen2): Split/ByteLevel pre-tokenizers with Unicode
//     regexes (ICU; lookahead supported), NFC and other normalisers, ignore_merges, merges
//     given as "a b" strings or ["a", "b"] pairs;
//   * sentencepiece-style BPE with byte_fallback (Llama 2, Mistral): Prepend/Replace
//     normalisers or a Metaspace pre-tokenizer, <0xNN> byte tokens;
//   * added tokens (special or not, lstrip/rstrip) matched before the model;
//   * tokenizer_config.json: bos/eos/pad tokens, add_bos_token/add_eos_token,
//     clean_up_tokenization_spaces.
// Ids equal Hugging Face tokenizers' (see tests/fixtures/tokenizers/*/vectors.json).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace polytune::text {

class Tokenizer {
 public:
  // Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json. Unsupported
  // components are an error naming the component type.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& dir);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(const std::string& tokenizer_json,
                                                             const std::string& tokenizer_config_json,
                                                             const std::string& source);
  ~Tokenizer();

  // UTF-8 text to ids. With add_special_tokens, the post-processor's template (or
  // add_bos_token / add_eos_token) adds BOS/EOS.
  std::vector<int64_t> Encode(const std::string& text, bool add_special_tokens = false) const;
  // Ids back to UTF-8 text (special tokens included as their content).
  std::string Decode(const std::vector<int64_t>& ids) const;
  // Decode without special tokens (added tokens marked special, and EOS), as generated text is
  // shown (Hugging Face's skip_special_tokens=True).
  std::string DecodeText(const std::vector<int64_t>& ids) const;
  // Decode without clean_up_tokenization_spaces: the exact inverse of Encode for the
  // supported tokenizers, used to align tokens with text.
  std::string DecodeRaw(const std::vector<int64_t>& ids) const;

  std::optional<int64_t> TokenToId(const std::string& token) const;
  // The first special added token (or EOS) in text[from, to): its byte range.
  std::optional<std::pair<size_t, size_t>> FindSpecialToken(const std::string& text, size_t from, size_t to) const;
  std::string IdToToken(int64_t id) const;
  int64_t vocab_size() const;  // largest id + 1
  std::optional<int64_t> bos_id() const;
  std::optional<int64_t> eos_id() const;
  std::optional<int64_t> pad_id() const;
  // tokenizer_config.json's chat_template, if any.
  const std::string& chat_template() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  // FromJson after parsing; throws nlohmann::json exceptions on a wrongly shaped file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Build(const nlohmann::json& j, const nlohmann::json& cfg,
                                                          const std::string& source);
  std::unique_ptr<Impl> impl_;
};

// GPT-2's reversible byte <-> printable code point map, as UTF-8 strings per byte.
const std::vector<std::string>& ByteLevelAlphabet();

}  // namespace polytune::text
