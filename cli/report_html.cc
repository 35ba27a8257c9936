// The report's HTML: static markup, one stylesheet, inline SVG charts; no scripts and nothing
// fetched, so it opens anywhere (a browser offline, an email attachment) and prints.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "polytune/common/build_info.h"
#include "report.h"

namespace polytune::cli {
namespace {

std::string Esc(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (step, value)
  bool dashed = false;
  bool markers = false;
};

// Tick values covering [lo, hi] at a 1/2/5 x 10^k spacing.
std::vector<double> Ticks(double lo, double hi, int want) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / want, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push_back(t);
  return ticks;
}

std::string Num(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e4 || a < 1e-3) return absl::StrFormat("%.1e", v);
  return absl::StrFormat("%.4g", v);
}

// A line chart with axes, ticks and a legend, as inline SVG.
std::string LineChart(const std::string& title, const std::string& y_label, const std::vector<Series>& series) {
  const double W = 600, H = 270, left = 64, right = 16, top = 30, bottom = 40;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  std::string svg =
      absl::StrFormat(R"(<figure><svg viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="%s">)"
                      R"(<text x="%g" y="18" class="ct">%s</text>)",
                      W, H, W, H, Esc(title), left, Esc(title));
  if (x0 > x1) return svg + R"(<text x="80" y="140" class="ax">no data</text></svg></figure>)";
  if (x1 == x0) x0 -= 1, x1 += 1;
  if (y1 == y0) y0 -= std::max(1e-9, std::abs(y0) * 0.05), y1 += std::max(1e-9, std::abs(y1) * 0.05);
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  auto X = [&](double x) { return left + (x - x0) / (x1 - x0) * (W - left - right); };
  auto Y = [&](double y) { return top + (y1 - y) / (y1 - y0) * (H - top - bottom); };
  for (double t : Ticks(y0, y1, 5))
    absl::StrAppendFormat(&svg,
                          R"(<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" class="grid"/>)"
                          R"(<text x="%g" y="%.1f" class="ax" text-anchor="end">%s</text>)",
                          left, Y(t), W - right, Y(t), left - 6, Y(t) + 4, Num(t));
  for (double t : Ticks(x0, x1, 6))
    absl::StrAppendFormat(&svg, R"(<text x="%.1f" y="%g" class="ax" text-anchor="middle">%s</text>)", X(t),
                          H - bottom + 16, Num(t));
  absl::StrAppendFormat(
      &svg,
      R"(<line x1="%g" y1="%g" x2="%g" y2="%g" class="axis"/>)"
      R"(<line x1="%g" y1="%g" x2="%g" y2="%g" class="axis"/>)"
      R"(<text x="%g" y="%g" class="ax" text-anchor="middle">step</text>)"
      R"svg(<text x="14" y="%g" class="ax" transform="rotate(-90 14 %g)" text-anchor="middle">%s</text>)svg",
      left, H - bottom, W - right, H - bottom, left, top, left, H - bottom, (left + W - right) / 2, H - 6,
      (top + H - bottom) / 2, (top + H - bottom) / 2, Esc(y_label));
  double legend_x = left + 8;
  for (size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    const char* color = kPalette[i % 10];
    std::string pts;
    for (const auto& [x, y] : s.points)
      if (std::isfinite(y)) absl::StrAppendFormat(&pts, "%.1f,%.1f ", X(x), Y(y));
    absl::StrAppendFormat(
        &svg, R"(<polyline points="%s" fill="none" stroke="%s" stroke-width="1.8"%s><title>%s</title></polyline>)", pts,
        color, s.dashed ? R"( stroke-dasharray="5 3")" : "", Esc(s.name));
    if (s.markers)
      for (const auto& [x, y] : s.points)
        if (std::isfinite(y))
          absl::StrAppendFormat(&svg, R"(<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>)", X(x), Y(y), color);
    absl::StrAppendFormat(
        &svg, R"(<rect x="%g" y="%g" width="10" height="3" fill="%s"/><text x="%g" y="%g" class="lg">%s</text>)",
        legend_x, top + 4, color, legend_x + 14, top + 8, Esc(s.name));
    legend_x += 24 + 7.0 * static_cast<double>(s.name.size());
  }
  return svg + "</svg></figure>";
}

std::string Cell(double v, const char* fmt = "%.4f") { return absl::StrFormat(fmt, v); }

std::string FormatTime(int64_t micros) {
  if (micros <= 0) return "";
  std::time_t t = static_cast<std::time_t>(micros / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

const char* kStyle = R"(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;color:#1b1b1b;margin:24px auto;max-width:1340px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}.sub{color:#555}.charts{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #e3e3e3;border-radius:6px;background:#fff}svg{display:block;max-width:100%;height:auto}
.ct{font-weight:600;font-size:13px}.ax{font-size:11px;fill:#555}.lg{font-size:11px;fill:#333}
.grid{stroke:#eee}.axis{stroke:#999}table{border-collapse:collapse;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}th{background:#f5f5f5}
td.t,th.t{text-align:left}.samples td{text-align:left;white-space:pre-wrap;max-width:420px;font-size:13px}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:10px;overflow:auto;font-size:12px}
.kv td:first-child{text-align:left;color:#555}.best{font-weight:600}
@media print{body{margin:0;max-width:none}figure,table,pre{break-inside:avoid}h2{break-after:avoid}a{color:inherit}}
@page{margin:14mm}
)";

}  // namespace

std::string RenderReportHtml(const ReportData& d) {
  std::vector<StepMetrics> steps;
  std::vector<EvalMetrics> evals;
  for (const auto& r : d.metrics) {
    if (const auto* s = std::get_if<StepMetrics>(&r.value)) steps.push_back(*s);
    if (const auto* e = std::get_if<EvalMetrics>(&r.value)) evals.push_back(*e);
  }
  std::set<std::string> langs;
  for (const auto& e : evals)
    for (const auto& [l, f] : e.languages) langs.insert(l);
  const bool generation =
      std::any_of(evals.begin(), evals.end(), [](const EvalMetrics& e) { return e.overall.has_generation(); });

  std::string h =
      absl::StrCat("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
                   "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
                   "<title>polytune report: ", Esc(d.title), "</title><style>", kStyle, "</style></head><body>\n");
  absl::StrAppend(&h, "<h1>", Esc(d.title), "</h1><div class=\"sub\">");
  if (!d.state.empty()) absl::StrAppend(&h, "<b>", Esc(d.state), "</b> — ", Esc(d.reason), "<br>");
  absl::StrAppend(&h, "Report by polytune ", Esc(BuildDescription()), "</div>\n");

  // Summary.
  absl::StrAppend(&h, "<h2>Summary</h2><table class=\"kv\">");
  auto kv = [&](const std::string& k, const std::string& v) {
    absl::StrAppend(&h, "<tr><td>", Esc(k), "</td><td class=\"t\">", Esc(v), "</td></tr>");
  };
  if (!steps.empty()) {
    const auto& last = steps.back();
    kv("steps", absl::StrCat(last.step, " of ", last.total_steps));
    kv("final training loss", Cell(last.loss));
    std::vector<double> tps;
    for (const auto& s : steps) tps.push_back(s.tokens_per_second);
    std::nth_element(tps.begin(), tps.begin() + tps.size() / 2, tps.end());
    kv("median tokens/s", Cell(tps[tps.size() / 2], "%.0f"));
    kv("training time", absl::StrFormat("%.1f s", last.elapsed_seconds));
  } else {
    kv("steps", "none recorded yet");
  }
  if (!evals.empty()) kv("last evaluation loss", Cell(evals.back().overall.loss));
  kv("checkpoints", d.checkpoint_steps.empty()
                        ? "none"
                        : absl::StrCat(d.checkpoint_steps.size(), " (steps ", d.checkpoint_steps.front(), "…",
                                       d.checkpoint_steps.back(), ")"));
  if (d.best_step) kv("best checkpoint", absl::StrCat("step ", *d.best_step));
  absl::StrAppend(&h, "</table>\n");

  // Training curves.
  absl::StrAppend(&h, "<h2>Training</h2><div class=\"charts\">");
  Series loss{"train loss", {}}, eval_loss{"eval loss", {}, true, true}, lr{"learning rate", {}}, tps{"tokens/s", {}};
  for (const auto& s : steps) {
    loss.points.push_back({static_cast<double>(s.step), s.loss});
    lr.points.push_back({static_cast<double>(s.step), s.lr});
    tps.points.push_back({static_cast<double>(s.step), s.tokens_per_second});
  }
  for (const auto& e : evals) eval_loss.points.push_back({static_cast<double>(e.step), e.overall.loss});
  absl::StrAppend(&h, LineChart("Loss", "loss", {loss, eval_loss}), LineChart("Learning rate", "lr", {lr}),
                  LineChart("Throughput", "tokens/s", {tps}), "</div>\n");

  // Evaluation per language over time.
  if (!evals.empty()) {
    absl::StrAppend(&h, "<h2>Evaluation by language</h2><div class=\"charts\">");
    std::vector<Series> by_lang_loss, by_lang_chrf;
    for (const auto& l : langs) {
      Series a{l, {}, false, true}, c{l, {}, false, true};
      for (const auto& e : evals) {
        auto it = e.languages.find(l);
        if (it == e.languages.end()) continue;
        a.points.push_back({static_cast<double>(e.step), it->second.loss});
        if (it->second.generated > 0) c.points.push_back({static_cast<double>(e.step), it->second.chrf});
      }
      by_lang_loss.push_back(std::move(a));
      by_lang_chrf.push_back(std::move(c));
    }
    absl::StrAppend(&h, LineChart("Eval loss by language", "loss", by_lang_loss));
    if (generation) absl::StrAppend(&h, LineChart("chrF by language", "chrF", by_lang_chrf));
    absl::StrAppend(&h, "</div>\n");

    // Loss figures of the last evaluation; generation figures of the last one that generated.
    const EvalMetrics& last = evals.back();
    const EvalMetrics* gen = nullptr;
    for (const auto& e : evals)
      if (e.overall.has_generation()) gen = &e;
    absl::StrAppend(&h, "<h3>Final figures</h3><table><tr><th class=\"t\">language</th><th>loss</th>",
                    "<th>ppl</th><th>accuracy</th><th>tokens</th>");
    if (gen)
      absl::StrAppend(&h, "<th>generated</th><th>chrF</th><th>chrF++</th><th>exact</th><th>label acc</th>",
                      "<th>macro F1</th>");
    absl::StrAppend(&h, "</tr>");
    auto row = [&](const std::string& name, const EvalFigures& f, const EvalFigures* g, bool bold) {
      absl::StrAppend(&h, "<tr", bold ? " class=\"best\"" : "", "><td class=\"t\">", Esc(name), "</td><td>",
                      Cell(f.loss), "</td><td>", Cell(f.ppl, "%.3f"), "</td><td>", Cell(f.accuracy), "</td><td>",
                      f.tokens, "</td>");
      if (gen && g && g->has_generation())
        absl::StrAppend(&h, "<td>", g->generated, "</td><td>", Cell(g->chrf, "%.2f"), "</td><td>",
                        Cell(g->chrfpp, "%.2f"), "</td><td>", Cell(g->exact_match, "%.3f"), "</td><td>",
                        g->labelled > 0 ? Cell(g->label_accuracy, "%.3f") : "–", "</td><td>",
                        g->labelled > 0 ? Cell(g->macro_f1, "%.3f") : "–", "</td>");
      else if (gen)
        absl::StrAppend(&h, "<td colspan=\"6\">–</td>");
      absl::StrAppend(&h, "</tr>");
    };
    for (const auto& [l, f] : last.languages) {
      const EvalFigures* g = nullptr;
      if (gen) {
        auto it = gen->languages.find(l);
        if (it != gen->languages.end()) g = &it->second;
      }
      row(l, f, g, false);
    }
    row("overall", last.overall, gen ? &gen->overall : nullptr, true);
    absl::StrAppend(&h, "</table><p class=\"sub\">Loss, perplexity and accuracy at step ", last.step);
    if (gen) absl::StrAppend(&h, "; generation figures at step ", gen->step, " (the last evaluation that generated)");
    absl::StrAppend(&h, ".</p>\n");
  }

  // Sample generations.
  if (!d.samples.empty()) {
    absl::StrAppend(&h, "<h2>Sample generations (step ", d.samples.front().step, ")</h2>");
    std::map<std::string, std::vector<const ReportSample*>> by_lang;
    for (const auto& s : d.samples) by_lang[s.lang].push_back(&s);
    for (const auto& [lang, list] : by_lang) {
      absl::StrAppend(&h, "<h3>", Esc(lang), "</h3><table class=\"samples\"><tr><th class=\"t\">prompt</th>",
                      "<th class=\"t\">output</th><th class=\"t\">reference</th><th>chrF</th></tr>");
      for (const auto* s : list)
        absl::StrAppend(&h, "<tr><td>", Esc(s->prompt), "</td><td>", Esc(s->output), "</td><td>",
                        Esc(s->reference.empty() ? s->label : s->reference), "</td><td>", Cell(s->chrf, "%.1f"),
                        "</td></tr>");
      absl::StrAppend(&h, "</table>");
    }
  }

  if (!d.events.empty()) {
    absl::StrAppend(&h, "<h2>Events</h2><table><tr><th class=\"t\">time</th><th class=\"t\">state</th>",
                    "<th class=\"t\">reason</th></tr>");
    for (const auto& e : d.events)
      absl::StrAppend(&h, "<tr><td class=\"t\">", Esc(FormatTime(e.time_unix_micros)), "</td><td class=\"t\">",
                      Esc(e.state), "</td><td class=\"t\">", Esc(e.reason), "</td></tr>");
    absl::StrAppend(&h, "</table>\n");
  }
  if (!d.spec_yaml.empty()) absl::StrAppend(&h, "<h2>Job spec</h2><pre>", Esc(d.spec_yaml), "</pre>\n");
  absl::StrAppend(&h, "</body></html>\n");
  return h;
}

}  // namespace polytune::cli
