#include "polytune/common/build_info.h"

namespace polytune {

const char* BuildVersion() { return POLYTUNE_VERSION; }
const char* BuildCommit() { return POLYTUNE_COMMIT; }
std::string BuildDescription() { return std::string(POLYTUNE_VERSION) + " (commit " + POLYTUNE_COMMIT + ")"; }

}  // namespace polytune
