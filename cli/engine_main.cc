// `polytune-engine`: the engine commands (and all others); `polytune` hands engine commands to
// it. Rank processes of `train --nproc N` run it directly.
#include "commands.h"

int main(int argc, char** argv) { return polytune::cli::Main(argc, argv); }
