// BLAS kernel selection: which OpenBLAS fallbacks are overridden, and that this test process
// (started through ReexecWithTunedCpuEnvironment, see test_main.cc) runs wide GEMM kernels
// wherever the CPU has them.
#include "polytune/engine/cpu_threads.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include <ATen/ATen.h>

namespace polytune::engine {
namespace {

TEST(CpuThreads, OnlySseEraFallbacksAreOverridden) {
  // Debian 12's OpenBLAS on an Emerald Rapids VM (family 6, model 207, unknown to 0.3.21).
  EXPECT_EQ(OpenBlasCoreTypeToForce("Prescott", /*avx2_fma=*/true, /*avx512=*/true), "SkylakeX");
  EXPECT_EQ(OpenBlasCoreTypeToForce("Prescott", true, false), "Haswell");
  EXPECT_EQ(OpenBlasCoreTypeToForce("Core2", true, false), "Haswell");
  EXPECT_EQ(OpenBlasCoreTypeToForce("Sandybridge", true, true), "SkylakeX");  // AVX1 kernels on an AVX-512 CPU
  // A CPU without AVX2 keeps what OpenBLAS found for it.
  EXPECT_EQ(OpenBlasCoreTypeToForce("Prescott", false, false), "");
  EXPECT_EQ(OpenBlasCoreTypeToForce("Sandybridge", false, false), "");
  // Modern choices stand, even where a wider kernel exists (Zen 4 has AVX-512; OpenBLAS's
  // own choice for it is kept).
  for (const char* modern : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "Excavator"})
    EXPECT_EQ(OpenBlasCoreTypeToForce(modern, true, true), "") << modern;
  // No OpenBLAS in the process (a CUDA libtorch with MKL, say): nothing to force.
  EXPECT_EQ(OpenBlasCoreTypeToForce("", true, true), "");
}

TEST(CpuThreads, ThisProcessRunsWideGemmKernelsWhereTheCpuHasThem) {
  at::mm(at::ones({8, 8}), at::ones({8, 8}));  // BLAS loaded and initialised
  const std::string core = OpenBlasCoreName();
  if (core.empty()) GTEST_SKIP() << "this process does not link OpenBLAS (no openblas_get_corename)";
  if (!CpuHasAvx2Fma()) GTEST_SKIP() << "this CPU has no AVX2 + FMA; OpenBLAS's own choice (" << core << ") stands";
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  const std::string env = forced != nullptr ? forced : "";
  if (!env.empty() && env != "SkylakeX" && env != "Haswell")
    GTEST_SKIP() << "OPENBLAS_CORETYPE=" << env << " was set by the user, and is kept";
  // After the re-exec, OpenBLAS's choice is one that nothing would override.
  EXPECT_EQ(OpenBlasCoreTypeToForce(core, true, true), "") << "OpenBLAS runs '" << core << "' kernels";
  EXPECT_EQ(OpenBlasCoreTypeToForce(core, true, false), "") << "OpenBLAS runs '" << core << "' kernels";
}

}  // namespace
}  // namespace polytune::engine
