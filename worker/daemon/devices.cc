#include "devices.h"

#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace polytune::worker {

absl::StatusOr<std::vector<DeviceSlot>> ParseDevices(const std::string& flag, const std::vector<int64_t>& cuda_memory) {
  std::vector<DeviceSlot> out;
  std::string spec = flag;
  if (spec == "auto" && !cuda_memory.empty()) {
    spec = "cuda:";
    for (size_t i = 0; i < cuda_memory.size(); ++i) spec += (i ? "," : "") + std::to_string(i);
  }
  if (spec == "auto" || spec.rfind("cpu", 0) == 0) {
    int n = 1;
    if (spec != "auto" && (spec.rfind("cpu:", 0) != 0 || !absl::SimpleAtoi(spec.substr(4), &n) || n < 1))
      return absl::InvalidArgumentError(absl::StrCat("--devices '", flag, "' is not cpu:N with N >= 1"));
    for (int i = 0; i < n; ++i) out.push_back({"cpu", i, 0});
    return out;
  }
  if (spec.rfind("cuda:", 0) == 0) {
    for (absl::string_view idx : absl::StrSplit(spec.substr(5), ',')) {
      int i;
      if (!absl::SimpleAtoi(idx, &i) || i < 0)
        return absl::InvalidArgumentError(absl::StrCat("--devices '", flag, "' is not cuda:0,1,..."));
      const int64_t memory = i < static_cast<int>(cuda_memory.size()) ? cuda_memory[i] : 0;
      out.push_back({"cuda", i, memory});
    }
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat("--devices '", flag, "': use auto, cpu:N or cuda:0,1"));
}

namespace {

std::vector<int64_t> QueryNvidiaSmiMiB(const char* field) {
  std::vector<int64_t> out;
  const std::string cmd = std::string("nvidia-smi --query-gpu=") + field + " --format=csv,noheader,nounits 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char line[128];
  while (std::fgets(line, sizeof(line), p)) {
    int64_t mib;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &mib)) out.push_back(mib << 20);
  }
  ::pclose(p);
  return out;
}

}  // namespace

std::vector<int64_t> QueryCudaMemory() { return QueryNvidiaSmiMiB("memory.total"); }
std::vector<int64_t> QueryCudaMemoryUsed() { return QueryNvidiaSmiMiB("memory.used"); }

}  // namespace polytune::worker
