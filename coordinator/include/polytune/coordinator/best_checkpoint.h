// The job's `best` checkpoint: the stored checkpoint whose evaluation scores best under the
// spec's early_stopping criterion (else the lowest eval loss), decided by the same rule the
// trainer stops with (spec::BestCheckpointStep).
#pragma once

#include <optional>

#include "absl/status/statusor.h"
#include "polytune/coordinator/domain.h"
#include "polytune/coordinator/store.h"

namespace polytune::coordinator {

// nullopt when no evaluation has a stored checkpoint.
absl::StatusOr<std::optional<int64_t>> FindBestCheckpoint(Store& store, const Job& job);

}  // namespace polytune::coordinator
