// Fuzz target: the data-preparation pipeline's fast JSONL reader and writer, differentially
// against nlohmann (whose results they must equal). The input, made valid UTF-8 as the pipeline
// makes every line, is read by both: a line the fast reader takes must mean the same value, of
// the same types, as nlohmann reads, and a line nlohmann refuses must be declined. Every value
// taken is written back by both writers, which must give the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "json_line.h"
#include "nlohmann/json.hpp"
#include "polytune/dataprep/standardize.h"
#include "support/same_json.h"

namespace {
using Json = nlohmann::ordered_json;

using polytune::testing::SameJson;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string raw(reinterpret_cast<const char*>(data), size);
  std::string repaired;
  const std::string* line = &raw;
  if (!polytune::dataprep::IsValidUtf8(raw)) {
    polytune::dataprep::RepairUtf8(raw, &repaired);
    line = &repaired;
  }
  const Json expected = Json::parse(*line, nullptr, /*allow_exceptions=*/false);
  Json got;
  if (!polytune::dataprep::ParseJsonLine(*line, &got)) return 0;
  if (expected.is_discarded() || !SameJson(got, expected)) std::abort();
  std::string written;
  polytune::dataprep::AppendJson(got, &written);
  if (written != got.dump(-1, ' ', false, Json::error_handler_t::replace)) std::abort();
  return 0;
}
