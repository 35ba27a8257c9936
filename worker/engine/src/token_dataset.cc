#include "polytune/engine/token_dataset.h"

#include <algorithm>
#include <fstream>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "polytune/engine/language_sampling.h"

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

}  // namespace

int64_t TokenExample::TargetCount() const {
  int64_t n = 0;
  for (size_t t = 1; t < labels.size(); ++t) n += labels[t] != kIgnoreIndex;
  return n;
}

absl::StatusOr<TokenDataset> LoadTokenDataset(const std::string& path, int64_t max_seq_len, int64_t vocab_size) {
  DatasetOptions o;
  o.max_seq_len = max_seq_len;
  o.vocab_size = vocab_size;
  return LoadDataset(path, o);
}

absl::StatusOr<TokenDataset> LoadDataset(const std::string& path, const DatasetOptions& o) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open dataset file"));
  TokenDataset data;
  data.path = path;
  std::vector<std::string> langs;
  std::string text;
  int64_t line = 0;
  text::EncodeOptions enc{o.tokenizer, o.chat_template, o.train_on_inputs};
  while (std::getline(in, text)) {
    ++line;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat(path, ":", line);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      return LineError(path, line, "", absl::StrCat("invalid JSON: ", e.what()));
    }
    auto parsed = text::ParseExample(j, o.format, where);
    if (!parsed.ok()) return parsed.status();
    auto encoded = text::EncodeExample(*parsed, enc, where);
    if (!encoded.ok()) return encoded.status();
    TokenExample ex;
    ex.input_ids = std::move(encoded->input_ids);
    ex.labels = std::move(encoded->labels);
    if (ex.input_ids.empty()) return LineError(path, line, "", "encodes to no tokens");
    for (size_t i = 0; i < ex.input_ids.size(); ++i) {
      const char* field = parsed->format == text::DataFormat::kTokens ? "input_ids" : "(tokenised text)";
      if (ex.input_ids[i] < 0 || ex.input_ids[i] >= o.vocab_size)
        return LineError(
            path, line, field,
            absl::StrCat("element ", i, " = ", ex.input_ids[i], " is outside the vocabulary [0, ", o.vocab_size, ")"));
      if (ex.labels[i] != kIgnoreIndex && (ex.labels[i] < 0 || ex.labels[i] >= o.vocab_size))
        return LineError(
            path, line, "labels",
            absl::StrCat("element ", i, " = ", ex.labels[i], " is outside the vocabulary [0, ", o.vocab_size, ")"));
    }
    data.untruncated_lengths.push_back(static_cast<int64_t>(ex.input_ids.size()));
    if (static_cast<int64_t>(ex.input_ids.size()) > o.max_seq_len) {
      ex.input_ids.resize(o.max_seq_len);
      ex.labels.resize(o.max_seq_len);
      ++data.truncated;
    }
    ++data.format_counts[text::DataFormatName(parsed->format)];
    langs.push_back(parsed->lang.empty() ? "und" : parsed->lang);
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
              const std::vector<int64_t>& example_ids, int64_t pack_len) {
  // Assign examples to rows.
  auto length = [&](size_t e) { return static_cast<int64_t>(data.examples[example_indices[e]].input_ids.size()); };
  std::vector<std::vector<size_t>> rows;
  std::vector<int64_t> row_fill;
  if (pack_len <= 0) {
    for (size_t e = 0; e < example_indices.size(); ++e) {
      rows.push_back({e});
      row_fill.push_back(length(e));
    }
  } else {
    // Every row is padded to the fullest one, so rows should be few and even: first-fit
    // decreasing finds how many rows the examples need, then longest-first into the emptiest
    // row that has room balances them (a row of 478 tokens beside one of 61 would pad 417).
    std::vector<size_t> order(example_indices.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return length(a) > length(b); });
    std::vector<int64_t> ffd;
    for (size_t e : order) {
      auto it = std::find_if(ffd.begin(), ffd.end(), [&](int64_t fill) { return fill + length(e) <= pack_len; });
      if (it == ffd.end())
        ffd.push_back(length(e));
      else
        *it += length(e);
    }
    rows.resize(ffd.size());
    row_fill.assign(ffd.size(), 0);
    for (size_t e : order) {
      size_t best = rows.size();
      for (size_t r = 0; r < rows.size(); ++r)
        if (row_fill[r] + length(e) <= pack_len && (best == rows.size() || row_fill[r] < row_fill[best])) best = r;
      if (best == rows.size()) {
        rows.emplace_back();
        row_fill.push_back(0);
      }
      rows[best].push_back(e);
      row_fill[best] += length(e);
    }
    for (auto& r : rows) std::sort(r.begin(), r.end());  // input order within a row
  }
  Batch b;
  b.rows = static_cast<int64_t>(rows.size());
  int64_t seq = 1;
  for (int64_t f : row_fill) seq = std::max(seq, f);
  b.input_ids = at::zeros({b.rows, seq}, at::kLong);
  b.labels = at::full({b.rows, seq}, kIgnoreIndex, at::kLong);
  b.position_ids = at::zeros({b.rows, seq}, at::kLong);
  at::Tensor segments = at::full({b.rows, seq}, -1, at::kLong);
  b.token_examples.assign(b.rows * seq, -1);
  b.token_positions.assign(b.rows * seq, 0);
  auto ids = b.input_ids.accessor<int64_t, 2>();
  auto labels = b.labels.accessor<int64_t, 2>();
  auto pos = b.position_ids.accessor<int64_t, 2>();
  auto seg = segments.accessor<int64_t, 2>();
  for (int64_t r = 0; r < b.rows; ++r) {
    int64_t offset = 0;
    for (size_t e : rows[r]) {
      const TokenExample& ex = data.examples[example_indices[e]];
      for (size_t t = 0; t < ex.input_ids.size(); ++t) {
        ids[r][offset + t] = ex.input_ids[t];
        // The first position is never a target (nothing precedes it in its example).
        labels[r][offset + t] = t == 0 ? kIgnoreIndex : ex.labels[t];
        pos[r][offset + t] = static_cast<int64_t>(t);
        seg[r][offset + t] = static_cast<int64_t>(e);
        b.token_examples[r * seq + offset + t] = example_ids[e];
        b.token_positions[r * seq + offset + t] = static_cast<int64_t>(t);
      }
      offset += static_cast<int64_t>(ex.input_ids.size());
      b.tokens += static_cast<int64_t>(ex.input_ids.size());
    }
    for (int64_t t = offset; t < seq; ++t) pos[r][t] = t;  // padding: any position works
  }
  for (size_t e = 0; e < example_indices.size(); ++e) b.languages.push_back(data.examples[example_indices[e]].language);
  if (pack_len > 0) b.segment_ids = segments;
  return b;
}

namespace {

// Fisher-Yates with SplitMix64: the same order on every platform and library version.
std::vector<int64_t> SeededPermutation(int64_t n, uint64_t state) {
  std::vector<int64_t> perm(n);
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(SplitMix64(state) % static_cast<uint64_t>(i + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

}  // namespace

BatchSchedule::BatchSchedule(int64_t num_examples, int64_t global_batch_size, uint64_t seed)
    : n_(num_examples), round_(num_examples), global_batch_(global_batch_size), seed_(seed) {}

BatchSchedule::BatchSchedule(const TokenDataset& data, int64_t global_batch_size, uint64_t seed,
                             const spec::LanguageSampling& sampling)
    : BatchSchedule(static_cast<int64_t>(data.examples.size()), global_batch_size, seed) {
  if (sampling.strategy == spec::SamplingStrategy::kNatural) return;
  sampled_ = true;
  lang_examples_.assign(data.languages.size(), {});
  for (size_t i = 0; i < data.examples.size(); ++i)
    lang_examples_[data.examples[i].language].push_back(static_cast<int64_t>(i));
  std::vector<int64_t> sizes;
  for (const auto& v : lang_examples_) sizes.push_back(static_cast<int64_t>(v.size()));
  counts_ = LanguageRoundCounts(sizes, sampling);
  round_ = 0;
  for (int64_t c : counts_) {
    offsets_.push_back(round_);
    round_ += c;
  }
}

const std::vector<int64_t>& BatchSchedule::Permutation(int64_t epoch) const {
  auto it = permutations_.find(epoch);
  if (it != permutations_.end()) return it->second;
  if (permutations_.size() > 4) permutations_.erase(permutations_.begin());
  return permutations_
      .emplace(epoch, SeededPermutation(n_, seed_ * 0x2545f4914f6cdd1dULL + static_cast<uint64_t>(epoch) + 1))
      .first->second;
}

const std::vector<int64_t>& BatchSchedule::CachedPermutation(int64_t key_a, int64_t key_b, int64_t n,
                                                             uint64_t salt) const {
  const auto key = std::make_pair(key_a, key_b);
  auto it = keyed_permutations_.find(key);
  if (it != keyed_permutations_.end()) return it->second;
  if (keyed_permutations_.size() > 64) keyed_permutations_.erase(keyed_permutations_.begin());
  uint64_t state = seed_ * 0x2545f4914f6cdd1dULL + salt;
  state ^= SplitMix64(state) + static_cast<uint64_t>(key_a) * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(key_b);
  return keyed_permutations_.emplace(key, SeededPermutation(n, state)).first->second;
}

int64_t BatchSchedule::ExampleAt(int64_t pos) const {
  if (!sampled_) return Permutation(pos / n_)[pos % n_];
  const int64_t round = pos / round_;
  // key_a -1: the round's slot order; key_a l >= 0: language l's passes over its examples.
  const int64_t slot = CachedPermutation(-1, round, round_, 0x5A17)[pos % round_];
  const int64_t l = std::upper_bound(offsets_.begin(), offsets_.end(), slot) - offsets_.begin() - 1;
  const int64_t q = round * counts_[l] + (slot - offsets_[l]);  // position in language l's stream
  const auto& examples = lang_examples_[l];
  const int64_t n_l = static_cast<int64_t>(examples.size());
  return examples[CachedPermutation(l, q / n_l, n_l, 0x1A46)[q % n_l]];
}

double BatchSchedule::EpochAt(int64_t step) const {
  return static_cast<double>(step * global_batch_) / static_cast<double>(round_);
}

int64_t BatchSchedule::StepsForEpochs(int64_t epochs) const {
  return (epochs * round_ + global_batch_ - 1) / global_batch_;
}

}  // namespace polytune::engine
