#include "polytune/engine/token_dataset.h"

#include <algorithm>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace polytune::engine {
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

absl::Status LineError(const std::string& path, int64_t line, const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ":", line, ": ", field.empty() ? "" : absl::StrCat("field '", field, "' "), why));
}

absl::Status ReadIds(const nlohmann::json& j, const std::string& path, int64_t line, const std::string& field,
                     bool allow_ignore, int64_t vocab_size, std::vector<int64_t>* out) {
  if (!j.is_array()) return LineError(path, line, field, "must be an array of integers");
  out->reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& v = j[i];
    if (!v.is_number_integer()) return LineError(path, line, field, absl::StrCat("element ", i, " is not an integer"));
    int64_t id = v.get<int64_t>();
    if (allow_ignore && id == kIgnoreIndex) {
      out->push_back(id);
      continue;
    }
    if (id < 0 || id >= vocab_size)
      return LineError(path, line, field, absl::StrCat("element ", i, " = ", id, " is outside the vocabulary [0, ", vocab_size, ")"));
    out->push_back(id);
  }
  return absl::OkStatus();
}

}  // namespace

int64_t TokenExample::TargetCount() const {
  int64_t n = 0;
  for (size_t t = 1; t < labels.size(); ++t) n += labels[t] != kIgnoreIndex;
  return n;
}

absl::StatusOr<TokenDataset> LoadTokenDataset(const std::string& path, int64_t max_seq_len, int64_t vocab_size) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open dataset file"));
  TokenDataset data;
  data.path = path;
  std::vector<std::string> langs;
  std::string text;
  int64_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      return LineError(path, line, "", absl::StrCat("invalid JSON: ", e.what()));
    }
    if (!j.is_object()) return LineError(path, line, "", "must be a JSON object");
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "input_ids" && it.key() != "labels" && it.key() != "lang")
        return LineError(path, line, it.key(), "is not a known field (expected input_ids, labels, lang)");
    if (!j.contains("input_ids")) return LineError(path, line, "input_ids", "is missing");
    TokenExample ex;
    absl::Status st = ReadIds(j["input_ids"], path, line, "input_ids", false, vocab_size, &ex.input_ids);
    if (!st.ok()) return st;
    if (ex.input_ids.empty()) return LineError(path, line, "input_ids", "must not be empty");
    if (j.contains("labels") && !j["labels"].is_null()) {
      st = ReadIds(j["labels"], path, line, "labels", true, vocab_size, &ex.labels);
      if (!st.ok()) return st;
      if (ex.labels.size() != ex.input_ids.size())
        return LineError(path, line, "labels",
                         absl::StrCat("has ", ex.labels.size(), " entries but input_ids has ", ex.input_ids.size()));
    } else {
      ex.labels = ex.input_ids;
    }
    std::string lang = "und";
    if (j.contains("lang") && !j["lang"].is_null()) {
      if (!j["lang"].is_string() || j["lang"].get<std::string>().empty())
        return LineError(path, line, "lang", "must be a non-empty string");
      lang = j["lang"].get<std::string>();
    }
    if (static_cast<int64_t>(ex.input_ids.size()) > max_seq_len) {
      ex.input_ids.resize(max_seq_len);
      ex.labels.resize(max_seq_len);
    }
    langs.push_back(lang);
    data.examples.push_back(std::move(ex));
  }
  if (data.examples.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": dataset has no examples"));
  std::set<std::string> unique(langs.begin(), langs.end());
  data.languages.assign(unique.begin(), unique.end());
  for (size_t i = 0; i < data.examples.size(); ++i)
    data.examples[i].language = static_cast<int32_t>(
        std::lower_bound(data.languages.begin(), data.languages.end(), langs[i]) - data.languages.begin());
  return data;
}

Batch Collate(const TokenDataset& data, const std::vector<int64_t>& example_indices,
              const std::vector<int64_t>& example_ids) {
  Batch b;
  const int64_t rows = static_cast<int64_t>(example_indices.size());
  int64_t seq = 1;
  for (int64_t i : example_indices) seq = std::max<int64_t>(seq, data.examples[i].input_ids.size());
  b.input_ids = at::zeros({rows, seq}, at::kLong);
  b.labels = at::full({rows, seq}, kIgnoreIndex, at::kLong);
  auto ids = b.input_ids.accessor<int64_t, 2>();
  auto labels = b.labels.accessor<int64_t, 2>();
  for (int64_t r = 0; r < rows; ++r) {
    const TokenExample& ex = data.examples[example_indices[r]];
    for (size_t t = 0; t < ex.input_ids.size(); ++t) {
      ids[r][t] = ex.input_ids[t];
      labels[r][t] = ex.labels[t];
    }
    b.tokens += static_cast<int64_t>(ex.input_ids.size());
    b.languages.push_back(ex.language);
  }
  b.example_ids = example_ids;
  return b;
}

BatchSchedule::BatchSchedule(int64_t num_examples, int64_t global_batch_size, uint64_t seed)
    : n_(num_examples), global_batch_(global_batch_size), seed_(seed) {}

const std::vector<int64_t>& BatchSchedule::Permutation(int64_t epoch) const {
  auto it = permutations_.find(epoch);
  if (it != permutations_.end()) return it->second;
  if (permutations_.size() > 4) permutations_.erase(permutations_.begin());
  std::vector<int64_t> perm(n_);
  for (int64_t i = 0; i < n_; ++i) perm[i] = i;
  // Fisher-Yates with SplitMix64: the same order on every platform and library version.
  uint64_t state = seed_ * 0x2545f4914f6cdd1dULL + static_cast<uint64_t>(epoch) + 1;
  for (int64_t i = n_ - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(SplitMix64(state) % static_cast<uint64_t>(i + 1));
    std::swap(perm[i], perm[j]);
  }
  return permutations_.emplace(epoch, std::move(perm)).first->second;
}

int64_t BatchSchedule::ExampleAt(int64_t pos) const { return Permutation(pos / n_)[pos % n_]; }

double BatchSchedule::EpochAt(int64_t step) const {
  return static_cast<double>(step * global_batch_) / static_cast<double>(n_);
}

int64_t BatchSchedule::StepsForEpochs(int64_t epochs) const {
  return (epochs * n_ + global_batch_ - 1) / global_batch_;
}

}  // namespace polytune::engine
