// The BPE model of tokenizer.json: vocabulary, ranked merges, byte fallback.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace polytune::text {

class BpeModel {
 public:
  // Ids are dense in real vocabularies (the largest hold ~260k tokens); a bigger id is a
  // corrupt file, not a reason to allocate gigabytes.
  static constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;
  static absl::StatusOr<BpeModel> FromJson(const nlohmann::json& model, const std::string& source);

  // Appends the ids of one pre-tokenized word. Merges apply lowest rank first, leftmost on
  // ties (Hugging Face's order); characters missing from the vocabulary become <0xNN> byte
  // tokens with byte_fallback, else the unk token.
  void EncodeWord(const std::string& word, std::vector<int64_t>* out) const;

  std::optional<int64_t> TokenToId(const std::string& token) const;
  const std::string* IdToToken(int64_t id) const;
  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }
  bool byte_fallback() const { return byte_fallback_; }

  BpeModel(BpeModel&& other) noexcept;
  BpeModel& operator=(BpeModel&& other) noexcept;
  BpeModel() = default;

 private:
  struct Merge {
    int32_t rank;
    int64_t id;
  };
  static uint64_t PairKey(int64_t a, int64_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b); }
  void Compute(const std::string& word, std::vector<int64_t>* out) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<int64_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int64_t byte_ids_[256] = {};
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace polytune::text
