// Fuzz target: the job spec YAML, as the CLI, the coordinator and the ranks parse it. Beyond
// not crashing: a spec that parses round-trips through its canonical YAML unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "polytune/spec/job_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace polytune::spec;
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  for (SpecUse use : {SpecUse::kSubmission, SpecUse::kTraining}) {
    const std::string base = use == SpecUse::kTraining ? "/base" : "";  // as the rank / the coordinator
    auto spec = ParseJobSpec(yaml, "fuzz.yaml", base, use);
    if (!spec.ok()) continue;
    const std::string canonical = ToCanonicalYaml(*spec);
    auto again = ParseJobSpec(canonical, "canonical.yaml", base, use);
    if (!again.ok() || ToCanonicalYaml(*again) != canonical) std::abort();  // the canonical form must be a fixed point
  }
  return 0;
}
