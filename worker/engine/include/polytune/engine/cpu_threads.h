// CPU threading and BLAS kernels: torch's OpenMP pool (elementwise ops) and OpenBLAS's
// threads (GEMMs), one pool where the OpenMP build of OpenBLAS is installed.
#pragma once

#include <string>
#include <string_view>

namespace polytune::engine {

// Uses `threads` threads in both pools (OpenBLAS through openblas_set_num_threads when the
// process links OpenBLAS).
void ConfigureCpuThreads(int threads);

// What the CPU (and the OS, which must save the wider registers) runs: AVX2 + FMA; the
// AVX-512 subsets (F, BW, VL, DQ, CD) OpenBLAS's SkylakeX kernels are built for.
bool CpuHasAvx2Fma();
bool CpuHasAvx512();

// Whether the CPU multiplies bf16 in hardware (AVX512_BF16 or AMX-BF16), which oneDNN's bf16
// matmuls (libtorch's CPU path for bf16 mm) use: on 2 Emerald Rapids cores, ~690 GFLOP/s
// against ~150 for fp32 sgemm on a train step's shapes. Without it bf16 matmuls are emulated
// and slower than fp32.
bool CpuHasNativeBf16Matmul();

// The GEMM kernel set OpenBLAS chose ("Haswell", "SkylakeX", "Prescott", ...); empty when the
// process does not link OpenBLAS.
std::string OpenBlasCoreName();

// The OPENBLAS_CORETYPE to force, or "" to leave OpenBLAS's choice alone. A dynamic-arch
// OpenBLAS that does not know the CPU's model falls back to SSE-era kernels (Debian 12's
// 0.3.21 picks "Prescott" on Emerald Rapids, model 207): sgemm at 45-51 GFLOP/s on 2 cores
// where its SkylakeX kernels reach 210. Only such a fallback on a CPU with AVX2 + FMA
// (or AVX-512) is overridden; a modern choice is kept.
std::string OpenBlasCoreTypeToForce(std::string_view detected, bool avx2_fma, bool avx512);

// How the loaded OpenBLAS runs its threads: 0 sequential, 1 its own pthreads, 2 OpenMP; -1
// when the process does not link OpenBLAS.
int OpenBlasThreading();

// The file the loaded OpenBLAS came from, symlinks resolved ("" when none is loaded).
std::string LoadedOpenBlasPath();

// Debian installs OpenBLAS's builds side by side (<libdir>/openblas-pthread/, -openmp/,
// -serial/) and picks one through update-alternatives. Given the loaded library's path, the
// OpenMP build's directory when the loaded one is the pthread build and the OpenMP build is
// there (`exists` tells, for tests); "" otherwise.
std::string OpenMpOpenBlasDirectory(std::string_view loaded_library, bool (*exists)(const std::string&));

// Call first thing in main(): sets, where unset, what the OpenMP runtime and OpenBLAS read
// only at start-up, and re-executes the program with the same arguments (returns at once when
// nothing needed setting, or if the exec fails):
//  - OMP_WAIT_POLICY=PASSIVE: OpenMP threads spinning after a parallel region steal the
//    cores OpenBLAS's threads need (on 2 cores a training step ran 1.7x slower);
//  - OPENBLAS_CORETYPE, per OpenBlasCoreTypeToForce. A value the user set is never changed;
//  - LD_LIBRARY_PATH with OpenBLAS's OpenMP build first (OpenMpOpenBlasDirectory; Debian's
//    libopenblas0-openmp), unless POLYTUNE_OPENBLAS_PTHREADS is set. The pthread build keeps
//    its own threads besides torch's OpenMP pool, and they spin in sched_yield between GEMMs
//    while torch's threads run the elementwise ops: on 2 cores 3 threads compete, and a fifth
//    of a training step's CPU time went to yielding. With the OpenMP build both use one pool.
// The re-executed process gets POLYTUNE_CPU_ENVIRONMENT_TUNED=1 and never re-executes again.
void ReexecWithTunedCpuEnvironment(int argc, char** argv);

}  // namespace polytune::engine
