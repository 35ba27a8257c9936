// Which devices a worker offers: --devices auto | cpu:N | cuda:0,1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker_types.h"

namespace polytune::worker {

// `cuda_memory` holds each CUDA device's memory (empty on a machine without CUDA); "auto"
// means every CUDA device, else one CPU slot.
absl::StatusOr<std::vector<DeviceSlot>> ParseDevices(const std::string& flag, const std::vector<int64_t>& cuda_memory);

// Total memory of each CUDA device in bytes, from nvidia-smi (empty when it is absent).
std::vector<int64_t> QueryCudaMemory();
// Memory in use on each CUDA device in bytes (empty without nvidia-smi).
std::vector<int64_t> QueryCudaMemoryUsed();

}  // namespace polytune::worker
