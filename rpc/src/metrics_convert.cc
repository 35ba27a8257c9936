#include "polytune/rpc/metrics_convert.h"

namespace polytune::rpc {
namespace {

void FiguresToProto(const EvalFigures& f, v1::EvalFigures* p) {
  p->set_loss(f.loss);
  p->set_ppl(f.ppl);
  p->set_accuracy(f.accuracy);
  p->set_tokens(f.tokens);
  p->set_generated(f.generated);
  p->set_chrf(f.chrf);
  p->set_chrfpp(f.chrfpp);
  p->set_exact_match(f.exact_match);
  p->set_labelled(f.labelled);
  p->set_label_accuracy(f.label_accuracy);
  p->set_macro_f1(f.macro_f1);
}

EvalFigures FiguresFromProto(const v1::EvalFigures& p) {
  EvalFigures f;
  f.loss = p.loss();
  f.ppl = p.ppl();
  f.accuracy = p.accuracy();
  f.tokens = p.tokens();
  f.generated = p.generated();
  f.chrf = p.chrf();
  f.chrfpp = p.chrfpp();
  f.exact_match = p.exact_match();
  f.labelled = p.labelled();
  f.label_accuracy = p.label_accuracy();
  f.macro_f1 = p.macro_f1();
  return f;
}

}  // namespace

v1::MetricsRecord ToProto(const MetricsRecord& record) {
  v1::MetricsRecord out;
  if (const auto* s = std::get_if<StepMetrics>(&record.value)) {
    v1::StepMetrics* p = out.mutable_step();
    p->set_step(s->step);
    p->set_total_steps(s->total_steps);
    p->set_epoch(s->epoch);
    p->set_loss(s->loss);
    p->set_lr(s->lr);
    p->set_grad_norm(s->grad_norm);
    p->set_tokens(s->tokens);
    p->set_target_tokens(s->target_tokens);
    p->set_tokens_per_second(s->tokens_per_second);
    p->set_elapsed_seconds(s->elapsed_seconds);
    for (const auto& [lang, n] : s->target_tokens_by_language) (*p->mutable_target_tokens_by_language())[lang] = n;
    return out;
  }
  if (const auto* d = std::get_if<DataPrepSummary>(&record.value)) {
    v1::DataPrepSummary* p = out.mutable_data_prep();
    p->set_step(d->step);
    p->set_key(d->key);
    p->set_cached(d->cached);
    p->set_seconds(d->seconds);
    for (const auto& [lang, l] : d->languages) {
      v1::DataPrepLanguage& pl = (*p->mutable_languages())[lang];
      pl.set_examples_in(l.examples_in);
      pl.set_kept(l.kept);
      for (const auto& [k, n] : l.dropped) (*pl.mutable_dropped())[k] = n;
      for (const auto& [k, n] : l.pii_replaced) (*pl.mutable_pii_replaced())[k] = n;
    }
    return out;
  }
  const auto& e = std::get<EvalMetrics>(record.value);
  v1::EvalMetrics* p = out.mutable_eval();
  p->set_step(e.step);
  p->set_epoch(e.epoch);
  FiguresToProto(e.overall, p->mutable_overall());
  for (const auto& [lang, f] : e.languages) FiguresToProto(f, &(*p->mutable_languages())[lang]);
  return out;
}

absl::StatusOr<MetricsRecord> FromProto(const v1::MetricsRecord& record) {
  if (record.has_step()) {
    const v1::StepMetrics& p = record.step();
    StepMetrics s;
    s.step = p.step();
    s.total_steps = p.total_steps();
    s.epoch = p.epoch();
    s.loss = p.loss();
    s.lr = p.lr();
    s.grad_norm = p.grad_norm();
    s.tokens = p.tokens();
    s.target_tokens = p.target_tokens();
    s.tokens_per_second = p.tokens_per_second();
    s.elapsed_seconds = p.elapsed_seconds();
    for (const auto& [lang, n] : p.target_tokens_by_language()) s.target_tokens_by_language[lang] = n;
    return MetricsRecord{s};
  }
  if (record.has_data_prep()) {
    const v1::DataPrepSummary& p = record.data_prep();
    DataPrepSummary d;
    d.step = p.step();
    d.key = p.key();
    d.cached = p.cached();
    d.seconds = p.seconds();
    for (const auto& [lang, pl] : p.languages()) {
      DataPrepLanguage& l = d.languages[lang];
      l.examples_in = pl.examples_in();
      l.kept = pl.kept();
      for (const auto& [k, n] : pl.dropped()) l.dropped[k] = n;
      for (const auto& [k, n] : pl.pii_replaced()) l.pii_replaced[k] = n;
    }
    return MetricsRecord{d};
  }
  if (record.has_eval()) {
    const v1::EvalMetrics& p = record.eval();
    EvalMetrics e;
    e.step = p.step();
    e.epoch = p.epoch();
    e.overall = FiguresFromProto(p.overall());
    for (const auto& [lang, f] : p.languages()) e.languages[lang] = FiguresFromProto(f);
    return MetricsRecord{e};
  }
  return absl::InvalidArgumentError("metrics record has neither step nor eval metrics");
}

}  // namespace polytune::rpc
