// Batched matmul on CPU with the batch split across torch's threads, one single-threaded GEMM
// per batch item.
#pragma once

#include <ATen/ATen.h>

namespace polytune::engine {

// a [n, m, k] @ b [n, k, p] -> [n, m, p], differentiable. Libtorch 1.13's CPU bmm without MKL
// runs the batch as a loop of small GEMMs, each split across the BLAS threads: attention's
// [128 x 64] @ [64 x 512] per head ran at a fraction of the rate one GEMM per core reaches.
// Here each thread takes whole batch items, and OpenBLAS's OpenMP build runs single-threaded
// inside the parallel region. On CPU fp32 with that build (or a sequential one) loaded; any
// other case (CUDA, other dtypes, OpenBLAS's pthread build) is at::bmm.
at::Tensor BatchedMatmul(const at::Tensor& a, const at::Tensor& b);

// Whether BatchedMatmul splits batches itself for these inputs (for tests).
bool BatchedMatmulSplitsBatches(const at::Tensor& a, const at::Tensor& b);

}  // namespace polytune::engine
