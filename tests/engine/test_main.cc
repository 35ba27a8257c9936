// engine_tests' main: the tuned CPU environment the engine's own binaries start with
// (ReexecWithTunedCpuEnvironment), so the tests train with the same GEMM kernels and OpenMP
// wait policy as `polytune train`, then GoogleTest.
#include <gtest/gtest.h>

#include "polytune/engine/cpu_threads.h"

int main(int argc, char** argv) {
  polytune::engine::ReexecWithTunedCpuEnvironment(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
