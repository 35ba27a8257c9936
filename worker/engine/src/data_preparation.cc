#include "polytune/engine/data_preparation.h"

#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "polytune/common/file_util.h"
#include "polytune/common/sha256.h"
#include "polytune/common/status_macros.h"
#include "polytune/dataprep/pipeline.h"

namespace polytune::engine {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kChunkBytes = 8 << 20;  // per all-reduce when shipping the prepared file

DataPrepSummary SummaryFromReport(const nlohmann::json& report, const std::string& key, bool cached) {
  DataPrepSummary s;
  s.key = key;
  s.cached = cached;
  s.seconds = report.value("seconds", 0.0);
  for (const auto& [lang, j] : report["languages"].items()) {
    DataPrepLanguage& l = s.languages[lang];
    l.examples_in = j.value("examples_in", int64_t{0});
    l.kept = j.value("kept", int64_t{0});
    for (const auto& [k, n] : j["dropped"].items()) l.dropped[k] = n.get<int64_t>();
    for (const auto& [k, n] : j["pii_replaced"].items()) l.pii_replaced[k] = n.get<int64_t>();
  }
  return s;
}

bool Complete(const fs::path& dir) { return fs::exists(dir / "report.json") && fs::exists(dir / "data.jsonl"); }

// Rank 0's bytes on every rank: lengths first, then the content in chunks, each an all-reduce
// sum of float bytes where the other ranks contribute zeros (exact: 0..255 in fp32).
absl::Status Broadcast(Communicator& comm, std::string* bytes) {
  at::Tensor size = at::zeros({1}, at::kDouble);
  if (comm.rank() == 0) size[0] = static_cast<double>(bytes->size());
  RETURN_IF_ERROR(comm.AllReduceSum(size));
  const int64_t n = static_cast<int64_t>(size[0].item<double>());
  if (comm.rank() != 0) bytes->assign(n, '\0');
  for (int64_t off = 0; off < n; off += kChunkBytes) {
    const int64_t len = std::min(kChunkBytes, n - off);
    at::Tensor chunk = at::zeros({len}, at::kFloat);
    if (comm.rank() == 0) {
      float* p = chunk.data_ptr<float>();
      for (int64_t i = 0; i < len; ++i) p[i] = static_cast<unsigned char>((*bytes)[off + i]);
    }
    RETURN_IF_ERROR(comm.AllReduceSum(chunk));
    if (comm.rank() != 0) {
      const float* p = chunk.data_ptr<float>();
      for (int64_t i = 0; i < len; ++i) (*bytes)[off + i] = static_cast<char>(static_cast<unsigned char>(p[i]));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::optional<PreparedTrainingData>> PrepareTrainingData(const spec::JobSpec& config, Communicator& comm,
                                                                        int threads) {
  if (!config.data.prepare.has_value()) return std::optional<PreparedTrainingData>();
  if (!config.data.train.is_path())
    return absl::FailedPreconditionError("data.prepare needs data.train as a local file on the worker");
  ASSIGN_OR_RETURN(std::string input, ReadFileToString(config.data.train.path()));
  // Cached by input, config and the preparation's algorithm version.
  const std::string key = Sha256Hex(absl::StrCat(Sha256Hex(input), "\n", spec::ToCanonicalYaml(*config.data.prepare),
                                                 "\n", dataprep::kPrepAlgorithmVersion));
  input.clear();
  const fs::path dir = fs::path(config.output_dir) / "prepared" / key;

  std::string failure;  // rank 0's error, shipped so every rank stops with it
  bool cached = false;
  if (comm.rank() == 0) {
    cached = Complete(dir);
    if (!cached) {
      auto staging = MakeStagingDirectory(dir.string());
      absl::Status st = staging.status();
      if (st.ok()) {
        dataprep::PrepOptions options;
        options.inputs = {config.data.train.path()};
        options.out_dir = *staging;
        options.threads = std::max(1, threads);
        auto report = dataprep::PrepareData(*config.data.prepare, options);
        st = report.ok() ? CommitDirectory(*staging, dir.string()) : report.status();
        if (report.ok() && st.ok()) std::fprintf(stderr, "%s", dataprep::FormatReportTable(*report).c_str());
      }
      if (!st.ok()) failure = absl::StrCat("data.prepare failed: ", st.message());
    }
  }
  RETURN_IF_ERROR(Broadcast(comm, &failure));
  if (!failure.empty()) return absl::FailedPreconditionError(failure);

  // Ship the prepared files only when some rank cannot see them (another machine).
  at::Tensor have = at::full({1}, Complete(dir) ? 1.0 : 0.0, at::kDouble);
  RETURN_IF_ERROR(comm.AllReduceSum(have));
  const bool everyone_has_it = static_cast<int>(have[0].item<double>()) == comm.world_size();
  std::string report_text, data_text;
  if (comm.rank() == 0 || everyone_has_it) {
    ASSIGN_OR_RETURN(report_text, ReadFileToString((dir / "report.json").string()));
  }
  if (!everyone_has_it) {
    if (comm.rank() == 0) {
      ASSIGN_OR_RETURN(data_text, ReadFileToString((dir / "data.jsonl").string()));
    }
    RETURN_IF_ERROR(Broadcast(comm, &report_text));
    RETURN_IF_ERROR(Broadcast(comm, &data_text));
    if (comm.rank() != 0 && !Complete(dir)) {
      ASSIGN_OR_RETURN(std::string staging, MakeStagingDirectory(dir.string()));
      RETURN_IF_ERROR(WriteFileAtomic((fs::path(staging) / "data.jsonl").string(), data_text));
      RETURN_IF_ERROR(WriteFileAtomic((fs::path(staging) / "report.json").string(), report_text));
      RETURN_IF_ERROR(CommitDirectory(staging, dir.string()));
    }
  }
  const auto report = nlohmann::json::parse(report_text, nullptr, false);
  if (report.is_discarded() || !report.contains("languages"))
    return absl::DataLossError(absl::StrCat((dir / "report.json").string(), " is not a preparation report"));
  PreparedTrainingData out;
  out.path = (dir / "data.jsonl").string();
  out.summary = SummaryFromReport(report, key, cached);
  return std::optional<PreparedTrainingData>(std::move(out));
}

}  // namespace polytune::engine
