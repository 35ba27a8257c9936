// BLAS kernel selection: which OpenBLAS fallbacks are overridden, and that this test process
// (started through ReexecWithTunedCpuEnvironment, see test_main.cc) runs wide GEMM kernels
// wherever the CPU has them.
#include "polytune/engine/cpu_threads.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
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

// CPUID against the kernel's own reading of the CPU's features.
TEST(CpuThreads, NativeBf16MatmulAgreesWithProcCpuinfo) {
  std::ifstream in("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) {
      flags = " " + line.substr(line.find(':') + 1) + " ";
      break;
    }
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo to compare with";
  auto has = [&](const std::string& f) { return flags.find(" " + f + " ") != std::string::npos; };
  const bool expected = CpuHasAvx512() && (has("avx512_bf16") || has("amx_bf16"));
  EXPECT_EQ(CpuHasNativeBf16Matmul(), expected) << flags;
}

TEST(CpuThreads, PrefersTheOpenMpBuildOfOpenBlasBesideThePthreadOne) {
  auto present = [](const std::string&) { return true; };
  auto absent = [](const std::string&) { return false; };
  EXPECT_EQ(OpenMpOpenBlasDirectory("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0", present),
            "/usr/lib/x86_64-linux-gnu/openblas-openmp");
  EXPECT_EQ(OpenMpOpenBlasDirectory("/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3", present),
            "/usr/lib/aarch64-linux-gnu/openblas-openmp");
  // Not installed, already the OpenMP build, or not a Debian side-by-side layout: left alone.
  EXPECT_EQ(OpenMpOpenBlasDirectory("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0", absent), "");
  EXPECT_EQ(OpenMpOpenBlasDirectory("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0", present), "");
  EXPECT_EQ(OpenMpOpenBlasDirectory("/opt/OpenBLAS/lib/libopenblas.so.0", present), "");
  EXPECT_EQ(OpenMpOpenBlasDirectory("", present), "");
}

TEST(CpuThreads, ThisProcessRunsOpenBlasInTorchsOpenMpPoolWhereItCan) {
  at::mm(at::ones({8, 8}), at::ones({8, 8}));
  const int threading = OpenBlasThreading();
  if (threading < 0) GTEST_SKIP() << "this process does not link OpenBLAS (no openblas_get_parallel)";
  if (threading != 1) {
    EXPECT_EQ(threading, 2) << "a sequential OpenBLAS (" << LoadedOpenBlasPath() << ") runs GEMMs on one core";
    return;
  }
  if (std::getenv("POLYTUNE_OPENBLAS_PTHREADS") != nullptr) GTEST_SKIP() << "POLYTUNE_OPENBLAS_PTHREADS is set";
  // The pthread build is loaded: only acceptable where no OpenMP build sits beside it.
  const std::string loaded = LoadedOpenBlasPath();
  const std::string openmp =
      OpenMpOpenBlasDirectory(loaded, [](const std::string& path) { return ::access(path.c_str(), R_OK) == 0; });
  EXPECT_EQ(openmp, "") << "the re-exec should have loaded " << openmp << " instead of " << loaded;
  if (openmp.empty()) GTEST_SKIP() << "no OpenMP build of OpenBLAS beside " << loaded << " (libopenblas0-openmp)";
}

}  // namespace
}  // namespace polytune::engine
