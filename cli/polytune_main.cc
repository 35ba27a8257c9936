// `polytune`: thin entry point; the commands live in commands.cc.
#include "commands.h"

int main(int argc, char** argv) { return polytune::cli::Main(argc, argv); }
