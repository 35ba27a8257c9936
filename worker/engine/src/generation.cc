#include "polytune/engine/generation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace polytune::engine {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// One generating row of the batch.
struct Row {
  size_t prompt_index;
  int64_t next_position;
  std::mt19937_64 rng;
  Generation out;
};

// Ends `row` if its last token or decoded text says so; true when it ended.
bool Finished(Row& row, const GenerationOptions& options, const TokenDecoder& decode) {
  const int64_t last = row.out.tokens.back();
  if (std::find(options.eos_ids.begin(), options.eos_ids.end(), last) != options.eos_ids.end()) {
    row.out.tokens.pop_back();
    row.out.finish = FinishReason::kEos;
    return true;
  }
  if (!options.stop_strings.empty() && decode) {
    std::string text = decode(row.out.tokens);
    size_t cut = std::string::npos;
    for (const auto& stop : options.stop_strings) cut = std::min(cut, text.find(stop));
    if (cut != std::string::npos) {
      row.out.text = text.substr(0, cut);
      row.out.finish = FinishReason::kStopString;
      return true;
    }
  }
  if (static_cast<int64_t>(row.out.tokens.size()) >= options.max_new_tokens) {
    row.out.finish = FinishReason::kLength;
    return true;
  }
  return false;
}

}  // namespace

absl::Status GenerationOptions::Validate() const {
  if (max_new_tokens < 1 || max_new_tokens > (int64_t{1} << 20))
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be in [1, 1048576], got ", max_new_tokens));
  if (!std::isfinite(temperature) || temperature < 0)
    return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0 (0: greedy), got ", temperature));
  if (top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0 (0: no limit), got ", top_k));
  if (!(top_p > 0 && top_p <= 1))
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", top_p));
  for (const auto& s : stop_strings)
    if (s.empty()) return absl::InvalidArgumentError("a stop string is empty; remove it");
  return absl::OkStatus();
}

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStopString:
      return "stop_string";
    case FinishReason::kLength:
      return "length";
  }
  return "?";
}

int64_t PickToken(const float* logits, int64_t vocab, const GenerationOptions& options, double uniform) {
  if (options.temperature <= 0) return std::max_element(logits, logits + vocab) - logits;
  // Candidates ordered most likely first (ties: lowest id), so a draw maps to one token.
  std::vector<int64_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  auto more_likely = [&](int64_t a, int64_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  int64_t keep = vocab;
  if (options.top_k > 0 && options.top_k < vocab) {
    keep = options.top_k;
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), more_likely);
  } else {
    std::sort(order.begin(), order.end(), more_likely);
  }
  const double top = logits[order[0]];
  std::vector<double> weights(static_cast<size_t>(keep));
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += weights[i] = std::exp((logits[order[i]] - top) / options.temperature);
  if (options.top_p < 1) {
    double mass = 0;
    int64_t n = 0;
    while (n < keep && mass < options.top_p * total) mass += weights[n++];
    keep = std::max<int64_t>(1, n);
    total = mass > 0 ? mass : weights[0];
  }
  double target = uniform * total;
  for (int64_t i = 0; i < keep; ++i) {
    target -= weights[i];
    if (target < 0) return order[i];
  }
  return order[keep - 1];
}

absl::StatusOr<std::vector<Generation>> Generate(const LlamaModel& model,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const GenerationOptions& options, const TokenDecoder& decode,
                                                 const std::vector<uint64_t>& stream_ids) {
  if (absl::Status st = options.Validate(); !st.ok()) return st;
  if (!stream_ids.empty() && stream_ids.size() != prompts.size())
    return absl::InvalidArgumentError("stream_ids must have one id per prompt");
  std::vector<Generation> results(prompts.size());
  if (prompts.empty()) return results;
  const int64_t vocab = model.config().vocab_size;
  int64_t longest = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) return absl::InvalidArgumentError(absl::StrCat("prompt ", i, " has no tokens"));
    for (int64_t id : prompts[i])
      if (id < 0 || id >= vocab)
        return absl::InvalidArgumentError(
            absl::StrCat("prompt ", i, " has token id ", id, " outside the vocabulary [0, ", vocab, ")"));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts[i].size()));
  }
  const int64_t batch = static_cast<int64_t>(prompts.size());
  // Prefill: prompts right-aligned, padding at position -1.
  at::Tensor ids = at::zeros({batch, longest}, at::kLong);
  at::Tensor positions = at::full({batch, longest}, -1, at::kLong);
  std::vector<Row> rows;
  for (int64_t r = 0; r < batch; ++r) {
    const auto& p = prompts[r];
    const int64_t len = static_cast<int64_t>(p.size()), pad = longest - len;
    ids[r].narrow(0, pad, len).copy_(at::tensor(p, at::kLong));
    positions[r].narrow(0, pad, len).copy_(at::arange(len, at::kLong));
    const uint64_t stream = stream_ids.empty() ? static_cast<uint64_t>(r) : stream_ids[r];
    rows.push_back(
        Row{static_cast<size_t>(r), len, std::mt19937_64(SplitMix64(options.seed ^ SplitMix64(stream))), {}});
  }
  KvCache cache = model.NewKvCache(batch, longest + options.max_new_tokens);
  at::Tensor hidden = model.ForwardCached(ids, positions, &cache);
  while (true) {
    at::Tensor logits = model.Logits(hidden.select(1, hidden.size(1) - 1)).to(at::kCPU, at::kFloat).contiguous();
    std::vector<Row> still;
    std::vector<int64_t> keep_rows, next_ids, next_positions;
    for (size_t r = 0; r < rows.size(); ++r) {
      Row& row = rows[r];
      const double u = static_cast<double>(row.rng() >> 11) * 0x1.0p-53;
      row.out.tokens.push_back(PickToken(logits[static_cast<int64_t>(r)].data_ptr<float>(), vocab, options, u));
      if (Finished(row, options, decode)) {
        if (decode && row.out.finish != FinishReason::kStopString) row.out.text = decode(row.out.tokens);
        results[row.prompt_index] = std::move(row.out);
        continue;
      }
      keep_rows.push_back(static_cast<int64_t>(r));
      next_ids.push_back(row.out.tokens.back());
      next_positions.push_back(row.next_position++);
      still.push_back(std::move(row));
    }
    if (still.empty()) break;
    if (still.size() != rows.size()) cache.SelectRows(keep_rows);
    rows = std::move(still);
    const int64_t n = static_cast<int64_t>(rows.size());
    hidden = model.ForwardCached(at::tensor(next_ids, at::kLong).view({n, 1}),
                                 at::tensor(next_positions, at::kLong).view({n, 1}), &cache);
  }
  return results;
}

}  // namespace polytune::engine
