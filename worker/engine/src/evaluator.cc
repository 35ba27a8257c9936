#include "polytune/engine/evaluator.h"

// at::NoGradGuard: libtorch 2.x no longer declares it through <ATen/ATen.h>.
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "polytune/engine/chunked_loss.h"
#include "polytune/engine/loss.h"

namespace polytune::engine {
namespace {

EvalFigures Finish(double loss_sum, double correct, double tokens) {
  EvalFigures f;
  f.tokens = static_cast<int64_t>(tokens);
  f.loss = tokens > 0 ? loss_sum / tokens : 0.0;
  f.ppl = std::exp(f.loss);
  f.accuracy = tokens > 0 ? correct / tokens : 0.0;
  return f;
}

nlohmann::json FiguresJson(const EvalFigures& f) {
  return {{"loss", f.loss}, {"ppl", f.ppl}, {"accuracy", f.accuracy}, {"tokens", f.tokens}};
}

}  // namespace

nlohmann::json EvalResult::ToJson() const {
  nlohmann::json langs = nlohmann::json::object();
  for (const auto& [lang, f] : languages) langs[lang] = FiguresJson(f);
  return {{"overall", FiguresJson(overall)}, {"languages", langs}};
}

EvalMetrics EvalResult::ToMetrics(int64_t step, double epoch) const {
  EvalMetrics m;
  m.step = step;
  m.epoch = epoch;
  m.overall = overall;
  m.languages = languages;
  return m;
}

absl::StatusOr<EvalResult> Evaluate(const LlamaModel& model, const TokenDataset& data, int64_t batch_size,
                                    Communicator& comm) {
  at::NoGradGuard no_grad;
  const int64_t n_lang = static_cast<int64_t>(data.languages.size());
  // [language][loss, correct, tokens], summed across ranks in one all-reduce.
  at::Tensor sums = at::zeros({n_lang, 3}, at::kDouble);
  auto acc = sums.accessor<double, 2>();
  std::vector<int64_t> mine;
  for (int64_t i = comm.rank(); i < static_cast<int64_t>(data.examples.size()); i += comm.world_size())
    mine.push_back(i);
  ForwardOptions options;  // eval: no dropout
  for (size_t start = 0; start < mine.size(); start += batch_size) {
    std::vector<int64_t> idx(mine.begin() + start, mine.begin() + std::min(mine.size(), start + batch_size));
    Batch b = Collate(data, idx, idx);
    at::Tensor hidden = model.ForwardHidden(b.input_ids, options, b.position_ids);
    RowStats s = ChunkedRowStats(hidden, model.head(), b.labels, LossChunkRows(model.config().vocab_size));
    for (size_t r = 0; r < idx.size(); ++r) {
      acc[b.languages[r]][0] += s.loss[r];
      acc[b.languages[r]][1] += static_cast<double>(s.correct[r]);
      acc[b.languages[r]][2] += static_cast<double>(s.targets[r]);
    }
  }
  absl::Status st = comm.AllReduceSum(sums);
  if (!st.ok()) return st;
  EvalResult result;
  double loss = 0, correct = 0, tokens = 0;
  for (int64_t l = 0; l < n_lang; ++l) {
    result.languages[data.languages[l]] = Finish(acc[l][0], acc[l][1], acc[l][2]);
    loss += acc[l][0];
    correct += acc[l][1];
    tokens += acc[l][2];
  }
  result.overall = Finish(loss, correct, tokens);
  return result;
}

}  // namespace polytune::engine
