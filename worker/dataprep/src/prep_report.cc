// The preparation report: report.json and the table on stdout.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "polytune/dataprep/pipeline.h"

namespace polytune::dataprep {
namespace {

nlohmann::json StatsJson(const LanguageStats& s) {
  nlohmann::json j;
  j["examples_in"] = s.examples_in;
  j["kept"] = s.kept;
  j["dropped"] = nlohmann::json::object();
  for (const auto& [k, v] : s.dropped) j["dropped"][k] = v;
  j["pii_replaced"] = nlohmann::json::object();
  for (const auto& [k, v] : s.pii) j["pii_replaced"][k] = v;
  j["bytes_in"] = s.bytes_in;
  j["bytes_out"] = s.bytes_out;
  return j;
}

int64_t Sum(const std::map<std::string, int64_t>& m) {
  int64_t n = 0;
  for (const auto& [k, v] : m) n += v;
  return n;
}

// Dropped counts grouped for the table: quality:* rules are one column.
int64_t DroppedLike(const LanguageStats& s, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& [k, v] : s.dropped)
    if (k.rfind(prefix, 0) == 0) n += v;
  return n;
}

}  // namespace

nlohmann::json PrepReport::ToJson() const {
  nlohmann::json j;
  j["total"] = StatsJson(total);
  j["languages"] = nlohmann::json::object();
  for (const auto& [lang, s] : languages) j["languages"][lang] = StatsJson(s);
  j["seconds"] = seconds;
  j["threads"] = threads;
  j["mb_per_second"] = seconds > 0 ? total.bytes_in / 1e6 / seconds : 0.0;
  j["stage_cpu_seconds"] = stage_seconds;
  j["near_dup"] = {{"bands", lsh.bands},
                   {"rows", lsh.rows},
                   {"candidates_verified", near_duplicate_candidates},
                   {"index_bytes", dedup_index_bytes}};
  return j;
}

std::string FormatReportTable(const PrepReport& r) {
  std::string out = absl::StrFormat("%-6s %9s %9s %8s %9s %8s %8s %9s %9s %8s\n", "lang", "in", "kept", "language",
                                    "quality", "dup", "near", "malformed", "pii", "MB in");
  auto row = [&](const std::string& name, const LanguageStats& s) {
    absl::StrAppendFormat(&out, "%-6s %9d %9d %8d %9d %8d %8d %9d %9d %8.2f\n", name, s.examples_in, s.kept,
                          DroppedLike(s, "language"), DroppedLike(s, "quality:"), DroppedLike(s, "duplicate"),
                          DroppedLike(s, "near_duplicate"),
                          DroppedLike(s, "malformed") + DroppedLike(s, "invalid_utf8"), Sum(s.pii), s.bytes_in / 1e6);
  };
  for (const auto& [lang, s] : r.languages) row(lang, s);
  row("total", r.total);
  absl::StrAppendFormat(&out, "%.2f MB in %.2f s (%.2f MB/s, %d threads)", r.total.bytes_in / 1e6, r.seconds,
                        r.seconds > 0 ? r.total.bytes_in / 1e6 / r.seconds : 0.0, r.threads);
  if (!r.total.pii.empty()) {
    out += "; PII replaced:";
    for (const auto& [type, n] : r.total.pii) absl::StrAppendFormat(&out, " %s %d", type, n);
  }
  out += "\n";
  return out;
}

}  // namespace polytune::dataprep
