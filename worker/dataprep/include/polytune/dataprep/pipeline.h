// `polytune data prepare`: JSONL in any of our data formats in; kept examples, dropped examples
// with their reasons, and a report out. Per example, in order: UTF-8 check, standardisation,
// language identification, quality filters, PII scrubbing (all in parallel over examples),
// then exact and near-duplicate removal in input order (the first of a group is kept, so the
// output does not depend on the thread count).
//
// Outputs in `out_dir`, each written to a temporary file, fsynced and renamed; report.json
// comes last, so its presence means the other two are whole:
//   data.jsonl     kept examples, `lang` set, text standardised and scrubbed, other fields as they were
//   dropped.jsonl  {"source": "file:line", "reason": ..., "detail": ..., "duplicate_of": "file:line",
//                   "example": <the input object, or the raw line when it was not JSON>}
//   report.json    PrepReport::ToJson()
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "polytune/dataprep/dedup.h"
#include "polytune/spec/prep_config.h"

namespace polytune::dataprep {

struct PrepOptions {
  std::vector<std::string> inputs;
  std::string out_dir;
  int threads = 1;
  // Called after each batch with (bytes read, total bytes of the inputs).
  std::function<void(int64_t, int64_t)> progress;
};

struct LanguageStats {
  int64_t examples_in = 0;
  int64_t kept = 0;
  std::map<std::string, int64_t> dropped;  // reason -> examples
  std::map<std::string, int64_t> pii;      // type -> replacements in kept examples
  int64_t bytes_in = 0;
  int64_t bytes_out = 0;
  void Add(const LanguageStats& o);
};

struct PrepReport {
  std::map<std::string, LanguageStats> languages;  // "und" when no language was found or given
  LanguageStats total;
  double seconds = 0;
  int threads = 1;
  // CPU seconds per stage summed over threads: utf8+parse, standardize, language, quality, pii,
  // dedup_hash (normalise, hash, shingle, sign), serialize (the kept line) and dedup (the
  // in-order lookups and verification).
  std::map<std::string, double> stage_seconds;
  LshParams lsh;
  int64_t near_duplicate_candidates = 0;  // LSH candidates verified by real Jaccard
  int64_t dedup_index_bytes = 0;          // LSH tables + exact-hash table at the end
  nlohmann::json ToJson() const;
};

// Names what PrepareData writes for a given input and config: raise it with every change that
// alters a kept or dropped line, so caches keyed on input and config (a job's `data.prepare`)
// are not reused across such a change.
inline constexpr char kPrepAlgorithmVersion[] = "2026-11-27b";  // b: one-permutation MinHash

absl::StatusOr<PrepReport> PrepareData(const spec::PrepConfig& config, const PrepOptions& options);
// The per-language table `polytune data prepare` prints.
std::string FormatReportTable(const PrepReport& report);

}  // namespace polytune::dataprep
