// CPU threading for the engine's two thread pools: torch's OpenMP pool (elementwise ops)
// and OpenBLAS's pthread pool (GEMMs).
#pragma once

namespace polytune::engine {

// Uses `threads` threads in both pools (OpenBLAS through openblas_set_num_threads when the
// process links OpenBLAS).
void ConfigureCpuThreads(int threads);

// OpenMP threads spinning after a parallel region steal the cores OpenBLAS's threads need:
// on 2 cores a training step runs 1.7x slower. libgomp reads OMP_WAIT_POLICY only at
// start-up, so when it is unset this sets it to PASSIVE and re-executes the program with
// the same arguments (returns only if that is not possible). Call first thing in main().
void ReexecWithPassiveOpenMpWait(int argc, char** argv);

}  // namespace polytune::engine
