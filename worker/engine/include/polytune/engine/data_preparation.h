// data.prepare inside a training run: rank 0 prepares data.train (polytune::dataprep) into
// output_dir/prepared/<key>, where key = sha256 of the training file's sha256 and the config's
// canonical YAML, and reuses that folder when an earlier attempt left it whole; every other
// rank receives the prepared bytes through the communicator (ranks on other machines have no
// view of rank 0's disk) unless every rank already sees the folder. All ranks then train on
// the same prepared file.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "polytune/common/metrics_record.h"
#include "polytune/engine/communicator.h"
#include "polytune/spec/job_spec.h"

namespace polytune::engine {

struct PreparedTrainingData {
  std::string path;         // the prepared data.jsonl this rank trains on
  DataPrepSummary summary;  // what rank 0 reported (on every rank)
};

// Returns nullopt when the spec has no data.prepare. `threads`: rank 0's preparation threads.
absl::StatusOr<std::optional<PreparedTrainingData>> PrepareTrainingData(const spec::JobSpec& config, Communicator& comm,
                                                                        int threads);

}  // namespace polytune::engine
