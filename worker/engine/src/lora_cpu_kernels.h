// fp32 CPU kernels for LoRA's rank-r products, with the dropout mask fused in.
//
// Each product has one side only r (16, 64) wide: [tokens x in] @ [in x r] and back. BLAS
// runs these far below its rate on square-ish GEMMs (about 50 GFLOP/s on the bench's 2 cores,
// against 215 for the projections): it packs both operands as for a large GEMM, and the
// narrow side leaves its micro-kernel mostly idle. These kernels keep the narrow side in
// registers and stream the wide one once. They also apply LoRA's dropout where they read or
// write the wide side, so the masked copy of x is never stored, neither in forward nor for
// backward.
//
// Results equal a plain fp32 GEMM's within rounding (the summation order differs); each output
// is summed in a fixed order whatever the thread count, so runs are reproducible.
#pragma once

#include <cstdint>

namespace polytune::engine::lora_cpu {

// LoRA dropout's mask on a [rows x columns] operand: element (m, c) is kept, and multiplied by
// `keep`, when (Fmix32(row_keys[m] + c * 0x9e3779b9) >> 8) >= threshold; else it is 0. This is
// the hash lora.cc's dropout uses. A null mask pointer means no dropout.
struct RowMask {
  const int32_t* row_keys = nullptr;
  uint32_t threshold = 0;
  float keep = 1.0f;
};

// Whether this CPU runs the kernels (AVX-512F). Callers use BLAS otherwise.
bool Available();

// out[rows x r] = scale * mask(x)[rows x k] @ w[k x r]. r a multiple of 16; row-major, contiguous.
void RowsTimesNarrow(const float* x, int64_t rows, int64_t k, const float* w, int64_t r, float scale,
                     const RowMask* mask, float* out);

// out[r x n] = scale * h[rows x r]^T @ mask(y)[rows x n]. r and n multiples of 16. Each output
// sums the rows in order.
void NarrowTransposedTimesRows(const float* h, int64_t rows, int64_t r, const float* y, int64_t n, float scale,
                               const RowMask* mask, float* out);

// out[rows x n] = mask(scale * h[rows x r] @ w[r x n]), or out += that when `accumulate`.
// n a multiple of 16.
void NarrowTimesWide(const float* h, int64_t rows, int64_t r, const float* w, int64_t n, float scale,
                     const RowMask* mask, bool accumulate, float* out);

}  // namespace polytune::engine::lora_cpu
