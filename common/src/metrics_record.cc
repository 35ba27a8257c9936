#include "polytune/common/metrics_record.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace polytune {
namespace {

using nlohmann::json;

json FiguresJson(const EvalFigures& f) {
  json j = {{"loss", f.loss}, {"ppl", f.ppl}, {"accuracy", f.accuracy}, {"tokens", f.tokens}};
  if (f.has_generation()) {
    j["generated"] = f.generated;
    j["chrf"] = f.chrf;
    j["chrfpp"] = f.chrfpp;
    j["exact_match"] = f.exact_match;
    j["labelled"] = f.labelled;
    j["label_accuracy"] = f.label_accuracy;
    j["macro_f1"] = f.macro_f1;
  }
  return j;
}

// Typed field access: a missing or mistyped field is an error naming its dotted path.
class Reader {
 public:
  explicit Reader(const json& j, std::string path = "") : j_(j), path_(std::move(path)) {}

  template <typename T>
  absl::Status Get(const char* key, T* out, bool required = true) const {
    auto it = j_.find(key);
    if (it == j_.end()) {
      if (!required) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat("metrics record has no '", Path(key), "'"));
    }
    if (!it->is_number())
      return absl::InvalidArgumentError(absl::StrCat("metrics field '", Path(key), "' is not a number"));
    *out = it->get<T>();
    return absl::OkStatus();
  }

  absl::StatusOr<Reader> Object(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || !it->is_object())
      return absl::InvalidArgumentError(absl::StrCat("metrics record has no object '", Path(key), "'"));
    return Reader(*it, Path(key));
  }

  const json& raw() const { return j_; }
  std::string Path(const std::string& key) const { return path_.empty() ? key : absl::StrCat(path_, ".", key); }

 private:
  const json& j_;
  std::string path_;
};

#define METRICS_RETURN_IF_ERROR(expr) \
  do {                                \
    absl::Status _st = (expr);        \
    if (!_st.ok()) return _st;        \
  } while (0)

absl::StatusOr<EvalFigures> ReadFigures(const Reader& r) {
  EvalFigures f;
  METRICS_RETURN_IF_ERROR(r.Get("loss", &f.loss));
  METRICS_RETURN_IF_ERROR(r.Get("ppl", &f.ppl));
  METRICS_RETURN_IF_ERROR(r.Get("accuracy", &f.accuracy));
  METRICS_RETURN_IF_ERROR(r.Get("tokens", &f.tokens));
  METRICS_RETURN_IF_ERROR(r.Get("generated", &f.generated, false));
  METRICS_RETURN_IF_ERROR(r.Get("chrf", &f.chrf, false));
  METRICS_RETURN_IF_ERROR(r.Get("chrfpp", &f.chrfpp, false));
  METRICS_RETURN_IF_ERROR(r.Get("exact_match", &f.exact_match, false));
  METRICS_RETURN_IF_ERROR(r.Get("labelled", &f.labelled, false));
  METRICS_RETURN_IF_ERROR(r.Get("label_accuracy", &f.label_accuracy, false));
  METRICS_RETURN_IF_ERROR(r.Get("macro_f1", &f.macro_f1, false));
  return f;
}

}  // namespace

int64_t MetricsRecord::step() const {
  return std::visit([](const auto& m) { return m.step; }, value);
}

std::string MetricsRecordToJson(const MetricsRecord& record) { return MetricsRecordToJsonValue(record).dump(); }

nlohmann::json MetricsRecordToJsonValue(const MetricsRecord& record) {
  if (const auto* s = std::get_if<StepMetrics>(&record.value)) {
    json j{{"step", s->step},
           {"total_steps", s->total_steps},
           {"epoch", s->epoch},
           {"loss", s->loss},
           {"lr", s->lr},
           {"grad_norm", s->grad_norm},
           {"tokens", s->tokens},
           {"target_tokens", s->target_tokens},
           {"tokens_per_second", s->tokens_per_second},
           {"elapsed_seconds", s->elapsed_seconds}};
    if (s->target_tokens_by_language.size() > 1) j["target_tokens_by_language"] = s->target_tokens_by_language;
    return j;
  }
  if (const auto* d = std::get_if<DataPrepSummary>(&record.value)) {
    json langs = json::object();
    for (const auto& [lang, l] : d->languages)
      langs[lang] = {
          {"examples_in", l.examples_in}, {"kept", l.kept}, {"dropped", l.dropped}, {"pii_replaced", l.pii_replaced}};
    return json{{"step", d->step},
                {"data_prep", {{"key", d->key}, {"cached", d->cached}, {"seconds", d->seconds}, {"languages", langs}}}};
  }
  const auto& e = std::get<EvalMetrics>(record.value);
  json langs = json::object();
  for (const auto& [lang, f] : e.languages) langs[lang] = FiguresJson(f);
  return json{
      {"step", e.step}, {"epoch", e.epoch}, {"eval", {{"overall", FiguresJson(e.overall)}, {"languages", langs}}}};
}

absl::StatusOr<MetricsRecord> MetricsRecordFromJson(absl::string_view line) {
  const json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("metrics record is not a JSON object");
  Reader r(j);
  if (j.contains("data_prep")) {
    DataPrepSummary d;
    METRICS_RETURN_IF_ERROR(r.Get("step", &d.step));
    auto dp = r.Object("data_prep");
    if (!dp.ok()) return dp.status();
    const json& raw = dp->raw();
    if (!raw.contains("languages") || !raw["languages"].is_object())
      return absl::InvalidArgumentError("metrics field 'data_prep.languages' is not an object");
    d.key = raw.value("key", std::string());
    d.cached = raw.value("cached", false);
    d.seconds = raw.value("seconds", 0.0);
    for (const auto& [lang, v] : raw["languages"].items()) {
      const std::string where = "data_prep.languages." + lang;
      if (!v.is_object() || !v.contains("examples_in") || !v["examples_in"].is_number_integer() ||
          !v.contains("kept") || !v["kept"].is_number_integer())
        return absl::InvalidArgumentError(
            absl::StrCat("metrics field '", where, "' needs integer examples_in and kept"));
      DataPrepLanguage l;
      l.examples_in = v["examples_in"].get<int64_t>();
      l.kept = v["kept"].get<int64_t>();
      for (const char* key : {"dropped", "pii_replaced"}) {
        if (!v.contains(key)) continue;
        if (!v[key].is_object())
          return absl::InvalidArgumentError(absl::StrCat("metrics field '", where, ".", key, "' is not an object"));
        for (const auto& [k, n] : v[key].items()) {
          if (!n.is_number_integer())
            return absl::InvalidArgumentError(
                absl::StrCat("metrics field '", where, ".", key, ".", k, "' is not an integer"));
          (std::string(key) == "dropped" ? l.dropped : l.pii_replaced)[k] = n.get<int64_t>();
        }
      }
      d.languages[lang] = std::move(l);
    }
    return MetricsRecord{d};
  }
  if (j.contains("eval")) {
    EvalMetrics e;
    METRICS_RETURN_IF_ERROR(r.Get("step", &e.step));
    METRICS_RETURN_IF_ERROR(r.Get("epoch", &e.epoch));
    auto ev = r.Object("eval");
    if (!ev.ok()) return ev.status();
    auto overall = ev->Object("overall");
    if (!overall.ok()) return overall.status();
    auto figures = ReadFigures(*overall);
    if (!figures.ok()) return figures.status();
    e.overall = *figures;
    auto langs = ev->Object("languages");
    if (!langs.ok()) return langs.status();
    for (const auto& [lang, value] : langs->raw().items()) {
      if (!value.is_object())
        return absl::InvalidArgumentError(absl::StrCat("metrics field '", langs->Path(lang), "' is not an object"));
      auto f = ReadFigures(Reader(value, langs->Path(lang)));
      if (!f.ok()) return f.status();
      e.languages[lang] = *f;
    }
    return MetricsRecord{e};
  }
  StepMetrics s;
  METRICS_RETURN_IF_ERROR(r.Get("step", &s.step));
  METRICS_RETURN_IF_ERROR(r.Get("total_steps", &s.total_steps, /*required=*/false));
  METRICS_RETURN_IF_ERROR(r.Get("epoch", &s.epoch));
  METRICS_RETURN_IF_ERROR(r.Get("loss", &s.loss));
  METRICS_RETURN_IF_ERROR(r.Get("lr", &s.lr));
  METRICS_RETURN_IF_ERROR(r.Get("grad_norm", &s.grad_norm));
  METRICS_RETURN_IF_ERROR(r.Get("tokens", &s.tokens));
  METRICS_RETURN_IF_ERROR(r.Get("target_tokens", &s.target_tokens));
  METRICS_RETURN_IF_ERROR(r.Get("tokens_per_second", &s.tokens_per_second));
  METRICS_RETURN_IF_ERROR(r.Get("elapsed_seconds", &s.elapsed_seconds));
  if (j.contains("target_tokens_by_language")) {
    const json& by = j["target_tokens_by_language"];
    if (!by.is_object())
      return absl::InvalidArgumentError("metrics field 'target_tokens_by_language' is not an object");
    for (const auto& [lang, n] : by.items()) {
      if (!n.is_number_integer())
        return absl::InvalidArgumentError(
            absl::StrCat("metrics field 'target_tokens_by_language.", lang, "' is not an integer"));
      s.target_tokens_by_language[lang] = n.get<int64_t>();
    }
  }
  return MetricsRecord{s};
}

}  // namespace polytune
