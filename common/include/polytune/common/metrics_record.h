// Training metrics as typed values: one StepMetrics per optimizer step and one EvalMetrics
// per evaluation (overall and per language). The trainer fills them, metrics.jsonl is written
// from them (one JSON object per line, the on-disk format documented in docs/job-spec.md),
// the worker reads that file back into them at its edge, and they cross gRPC and SQLite as
// the same fields. No one else parses metrics text.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace polytune {

struct StepMetrics {
  int64_t step = 0;         // optimizer steps completed
  int64_t total_steps = 0;  // of the run (0 when unknown: records written before it was kept)
  double epoch = 0;
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;
  int64_t tokens = 0;         // in the step's global batch
  int64_t target_tokens = 0;  // of them, those the loss is taken on
  double tokens_per_second = 0;
  double elapsed_seconds = 0;  // since this run (or resumed run) started
  // target_tokens by the examples' `lang` ("und" without one); in metrics.jsonl only when the
  // data has more than one language.
  std::map<std::string, int64_t> target_tokens_by_language;
};

struct EvalFigures {
  double loss = 0;  // mean over target tokens
  double ppl = 0;
  double accuracy = 0;  // next-token accuracy
  int64_t tokens = 0;
  // Evaluation by generation (training.eval_generate); all 0 when it did not run. In
  // metrics.jsonl these fields appear only when `generated` or `labelled` is above 0.
  int64_t generated = 0;  // examples scored against a reference answer
  double chrf = 0;        // corpus chrF2 (sacreBLEU), 0..100
  double chrfpp = 0;      // corpus chrF2++
  double exact_match = 0;
  int64_t labelled = 0;  // examples with a label
  double label_accuracy = 0;
  double macro_f1 = 0;
  bool has_generation() const { return generated > 0 || labelled > 0; }
};

struct EvalMetrics {
  int64_t step = 0;
  double epoch = 0;
  EvalFigures overall;
  std::map<std::string, EvalFigures> languages;  // by language code
};

// What data.prepare did before training (one record, at step 0): per language, examples in
// and kept, dropped by reason and PII replaced by type in the kept ones.
struct DataPrepLanguage {
  int64_t examples_in = 0;
  int64_t kept = 0;
  std::map<std::string, int64_t> dropped;
  std::map<std::string, int64_t> pii_replaced;
};
struct DataPrepSummary {
  int64_t step = 0;     // always 0: before the first step
  std::string key;      // the cache key (sha256 of the input's sha256 and the config)
  bool cached = false;  // reused from an earlier attempt
  double seconds = 0;
  std::map<std::string, DataPrepLanguage> languages;
};

// One record of the metrics stream.
struct MetricsRecord {
  std::variant<StepMetrics, EvalMetrics, DataPrepSummary> value;
  int64_t step() const;
  bool is_eval() const { return std::holds_alternative<EvalMetrics>(value); }
  bool is_data_prep() const { return std::holds_alternative<DataPrepSummary>(value); }
  // With step(), a record's identity in the stream: 0 step, 1 evaluation, 2 data preparation.
  int kind() const { return static_cast<int>(value.index()); }
};

// The record as the JSON object of its metrics.jsonl line (for tools printing JSON).
nlohmann::json MetricsRecordToJsonValue(const MetricsRecord& record);
// The metrics.jsonl line of a record, without the trailing newline.
std::string MetricsRecordToJson(const MetricsRecord& record);
// Parses one metrics.jsonl line; the error names the missing or mistyped field.
absl::StatusOr<MetricsRecord> MetricsRecordFromJson(absl::string_view line);

}  // namespace polytune
