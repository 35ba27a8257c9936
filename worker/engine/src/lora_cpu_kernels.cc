#include "lora_cpu_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define POLYTUNE_LORA_KERNELS 1
#define POLYTUNE_AVX512 __attribute__((target("avx512f")))
#endif

namespace polytune::engine::lora_cpu {

#if POLYTUNE_LORA_KERNELS

bool Available() {
  static const bool available = __builtin_cpu_supports("avx512f");
  return available;
}

namespace {

constexpr uint32_t kGolden = 0x9e3779b9u;
constexpr int64_t kPrefetchRows = 24;

// The register tiles below keep their accumulators in named registers only when every loop over
// them is unrolled (GCC otherwise keeps the array on the stack: 3x slower).
#define POLYTUNE_UNROLL _Pragma("GCC unroll 16")

POLYTUNE_AVX512 inline __m512i Fmix32x16(__m512i z) {
  z = _mm512_xor_si512(z, _mm512_srli_epi32(z, 16));
  z = _mm512_mullo_epi32(z, _mm512_set1_epi32(static_cast<int32_t>(0x85ebca6bu)));
  z = _mm512_xor_si512(z, _mm512_srli_epi32(z, 13));
  z = _mm512_mullo_epi32(z, _mm512_set1_epi32(static_cast<int32_t>(0xc2b2ae35u)));
  return _mm512_xor_si512(z, _mm512_srli_epi32(z, 16));
}

// Lanes of columns c0 .. c0 + 15 of a row that the mask keeps.
POLYTUNE_AVX512 inline __mmask16 KeptLanes(const RowMask& mask, int64_t row, int64_t c0) {
  const __m512i lane_steps = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32(static_cast<int32_t>(kGolden)));
  const uint32_t start = static_cast<uint32_t>(mask.row_keys[row]) + static_cast<uint32_t>(c0) * kGolden;
  const __m512i z = Fmix32x16(_mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(start)), lane_steps));
  return _mm512_cmpge_epu32_mask(_mm512_srli_epi32(z, 8), _mm512_set1_epi32(static_cast<int32_t>(mask.threshold)));
}

POLYTUNE_AVX512 inline __m512 ApplyMask(const RowMask& mask, int64_t row, int64_t c0, __m512 v) {
  return _mm512_maskz_mul_ps(KeptLanes(mask, row, c0), v, _mm512_set1_ps(mask.keep));
}

POLYTUNE_AVX512 inline __mmask16 TailLanes(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << count) - 1u);
}

// One row of x, masked, into dst (k values).
POLYTUNE_AVX512 void MaskRow(const RowMask& mask, int64_t row, const float* x, int64_t k, float* dst) {
  for (int64_t c = 0; c < k; c += 16) {
    const __mmask16 lanes = TailLanes(k - c);
    _mm512_mask_storeu_ps(dst + c, lanes, ApplyMask(mask, row, c, _mm512_maskz_loadu_ps(lanes, x + c)));
  }
}

// out[MR x 16 NV] = scale * x[MR x k] @ w[k x 16 NV] (rows of x `ldx` apart, of w `ldw`, of out `ldo`).
// Per k: NV loads of w, MR broadcasts of x, MR x NV independent FMAs.
template <int MR, int NV>
POLYTUNE_AVX512 void NarrowTile(const float* x, int64_t ldx, int64_t k, const float* w, int64_t ldw, float scale,
                                float* out, int64_t ldo) {
  __m512 acc[MR][NV];
  POLYTUNE_UNROLL for (int i = 0; i < MR; ++i) POLYTUNE_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] =
      _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    __m512 wv[NV];
    POLYTUNE_UNROLL for (int j = 0; j < NV; ++j) wv[j] = _mm512_loadu_ps(w + kk * ldw + 16 * j);
    POLYTUNE_UNROLL for (int i = 0; i < MR; ++i) {
      const __m512 xb = _mm512_set1_ps(x[i * ldx + kk]);
      POLYTUNE_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(xb, wv[j], acc[i][j]);
    }
  }
  const __m512 s = _mm512_set1_ps(scale);
  POLYTUNE_UNROLL for (int i = 0; i < MR; ++i) POLYTUNE_UNROLL for (int j = 0; j < NV; ++j)
      _mm512_storeu_ps(out + i * ldo + 16 * j, _mm512_mul_ps(acc[i][j], s));
}

template <int MR, int NV>
void RowsTimesNarrowImpl(const float* x, int64_t rows, int64_t k, const float* w, int64_t r, float scale,
                         const RowMask* mask, float* out) {
  constexpr int64_t kBlock = 16 * NV;
  const int64_t tiles = (rows + MR - 1) / MR;
  at::parallel_for(0, tiles, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, k)), [&](int64_t begin, int64_t end) {
    // Masked rows, and the last tile's rows padded with zeros, go through this buffer.
    std::vector<float> rows_buffer;
    float tile_out[MR * kBlock];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t row0 = t * MR, n = std::min<int64_t>(MR, rows - row0);
      const float* src = x + row0 * k;
      if (mask != nullptr || n < MR) {
        rows_buffer.resize(static_cast<size_t>(MR * k));
        std::fill(rows_buffer.begin() + n * k, rows_buffer.end(), 0.0f);
        for (int64_t i = 0; i < n; ++i) {
          if (mask != nullptr)
            MaskRow(*mask, row0 + i, x + (row0 + i) * k, k, rows_buffer.data() + i * k);
          else
            std::memcpy(rows_buffer.data() + i * k, x + (row0 + i) * k, sizeof(float) * k);
        }
        src = rows_buffer.data();
      }
      for (int64_t c0 = 0; c0 < r; c0 += kBlock) {
        if (n == MR) {
          NarrowTile<MR, NV>(src, k, k, w + c0, r, scale, out + row0 * r + c0, r);
        } else {
          NarrowTile<MR, NV>(src, k, k, w + c0, r, scale, tile_out, kBlock);
          for (int64_t i = 0; i < n; ++i)
            std::memcpy(out + (row0 + i) * r + c0, tile_out + i * kBlock, sizeof(float) * kBlock);
        }
      }
    }
  });
}

// Rows [m_begin, m_end) of out[16 x 16] block (rows `ldo` apart) = scale * h[rows x 16]^T @
// mask(y)[rows x 16 at column c0]: the partial sums start from zero on the first slab of rows
// and from out's on the others, and are scaled after the last. Per row: one load of y
// (masked), 16 broadcasts of h, 16 FMAs, rows summed in order.
POLYTUNE_AVX512 void ReduceBlock(const float* h, int64_t ldh, int64_t m_begin, int64_t m_end, const float* y,
                                 int64_t ldy, int64_t c0, const RowMask* mask, float scale, bool first, bool last,
                                 float* out, int64_t ldo) {
  __m512 acc[16];
  POLYTUNE_UNROLL for (int i = 0; i < 16; ++i) acc[i] =
      first ? _mm512_setzero_ps() : _mm512_loadu_ps(out + i * ldo + c0);
  for (int64_t m = m_begin; m < m_end; ++m) {
    // Rows are ldy apart, too far for the hardware prefetcher, and each row's block is one
    // cache line: without fetching ahead the loop waits on memory most of the time.
    _mm_prefetch(reinterpret_cast<const char*>(y + (m + kPrefetchRows) * ldy + c0), _MM_HINT_T0);
    __m512 v = _mm512_loadu_ps(y + m * ldy + c0);
    if (mask != nullptr) v = ApplyMask(*mask, m, c0, v);
    const float* hm = h + m * ldh;
    POLYTUNE_UNROLL for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(hm[i]), v, acc[i]);
  }
  const __m512 s = _mm512_set1_ps(scale);
  POLYTUNE_UNROLL for (int i = 0; i < 16; ++i)
      _mm512_storeu_ps(out + i * ldo + c0, last ? _mm512_mul_ps(acc[i], s) : acc[i]);
}

// out[MR rows x 16 CB columns at c0] (=, +=) mask(scale * h[MR x r] @ w[r x n] columns c0..).
template <int MR, int CB>
POLYTUNE_AVX512 void WideTile(const float* h, int64_t r, const float* w, int64_t n, int64_t row0, int64_t c0,
                              float scale, const RowMask* mask, bool accumulate, float* out) {
  __m512 acc[MR][CB];
  POLYTUNE_UNROLL for (int i = 0; i < MR; ++i) POLYTUNE_UNROLL for (int j = 0; j < CB; ++j) acc[i][j] =
      _mm512_setzero_ps();
  for (int64_t rr = 0; rr < r; ++rr) {
    __m512 wv[CB];
    POLYTUNE_UNROLL for (int j = 0; j < CB; ++j) wv[j] = _mm512_loadu_ps(w + rr * n + c0 + 16 * j);
    POLYTUNE_UNROLL for (int i = 0; i < MR; ++i) {
      const __m512 hb = _mm512_set1_ps(h[(row0 + i) * r + rr]);
      POLYTUNE_UNROLL for (int j = 0; j < CB; ++j) acc[i][j] = _mm512_fmadd_ps(hb, wv[j], acc[i][j]);
    }
  }
  const __m512 s = _mm512_set1_ps(scale);
  POLYTUNE_UNROLL for (int i = 0; i < MR; ++i) POLYTUNE_UNROLL for (int j = 0; j < CB; ++j) {
    float* dst = out + (row0 + i) * n + c0 + 16 * j;
    __m512 v = _mm512_mul_ps(acc[i][j], s);
    if (mask != nullptr) v = ApplyMask(*mask, row0 + i, c0 + 16 * j, v);
    if (accumulate) v = _mm512_add_ps(_mm512_loadu_ps(dst), v);
    _mm512_storeu_ps(dst, v);
  }
}

// Rows [row_begin, row_end) (at most 4) of NarrowTimesWide, columns c0 .. c0 + 16 CB.
template <int CB>
POLYTUNE_AVX512 void WideColumns(const float* h, int64_t r, const float* w, int64_t n, int64_t row_begin,
                                 int64_t row_end, int64_t c0, float scale, const RowMask* mask, bool accumulate,
                                 float* out) {
  int64_t row = row_begin;
  for (; row + 4 <= row_end; row += 4) WideTile<4, CB>(h, r, w, n, row, c0, scale, mask, accumulate, out);
  for (; row < row_end; ++row) WideTile<1, CB>(h, r, w, n, row, c0, scale, mask, accumulate, out);
}

}  // namespace

void RowsTimesNarrow(const float* x, int64_t rows, int64_t k, const float* w, int64_t r, float scale,
                     const RowMask* mask, float* out) {
  TORCH_CHECK(r % 16 == 0 && r > 0, "RowsTimesNarrow: r must be a positive multiple of 16");
  if (r % 64 == 0)
    RowsTimesNarrowImpl<6, 4>(x, rows, k, w, r, scale, mask, out);
  else if (r % 32 == 0)
    RowsTimesNarrowImpl<8, 2>(x, rows, k, w, r, scale, mask, out);
  else
    RowsTimesNarrowImpl<8, 1>(x, rows, k, w, r, scale, mask, out);
}

void NarrowTransposedTimesRows(const float* h, int64_t rows, int64_t r, const float* y, int64_t n, float scale,
                               const RowMask* mask, float* out) {
  TORCH_CHECK(r % 16 == 0 && n % 16 == 0, "NarrowTransposedTimesRows: r and n must be multiples of 16");
  const int64_t column_blocks = n / 16, blocks = (r / 16) * column_blocks;
  // A slab of rows at a time across this thread's blocks: the blocks of a row are neighbouring
  // cache lines, read while the slab is in L2 (one block down all rows, then the next, had read
  // y in column strips: slower than BLAS). Partial sums wait in out between slabs, so each
  // output still sums its rows in order, whatever the thread count.
  constexpr int64_t kSlabRows = 128;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t m0 = 0; m0 < rows || m0 == 0; m0 += kSlabRows) {
      const int64_t m1 = std::min(rows, m0 + kSlabRows);
      for (int64_t b = begin; b < end; ++b) {
        const int64_t r0 = (b / column_blocks) * 16, c0 = (b % column_blocks) * 16;
        ReduceBlock(h + r0, r, m0, m1, y, n, c0, mask, scale, m0 == 0, m1 == rows, out + r0 * n, n);
      }
    }
  });
}

void NarrowTimesWide(const float* h, int64_t rows, int64_t r, const float* w, int64_t n, float scale,
                     const RowMask* mask, bool accumulate, float* out) {
  TORCH_CHECK(n % 16 == 0, "NarrowTimesWide: n must be a multiple of 16");
  constexpr int64_t kRowsPerTask = 64;
  at::parallel_for(0, (rows + kRowsPerTask - 1) / kRowsPerTask, 1, [&](int64_t begin, int64_t end) {
    const int64_t row_begin = begin * kRowsPerTask, row_end = std::min(rows, end * kRowsPerTask);
    for (int64_t row = row_begin; row < row_end; row += 4) {
      const int64_t row_stop = std::min(row_end, row + 4);
      int64_t c0 = 0;
      for (; c0 + 64 <= n; c0 += 64) WideColumns<4>(h, r, w, n, row, row_stop, c0, scale, mask, accumulate, out);
      for (; c0 < n; c0 += 16) WideColumns<1>(h, r, w, n, row, row_stop, c0, scale, mask, accumulate, out);
    }
  });
}

#else  // no x86-64 AVX-512 build: callers take the BLAS path

bool Available() { return false; }
void RowsTimesNarrow(const float*, int64_t, int64_t, const float*, int64_t, float, const RowMask*, float*) {
  TORCH_CHECK(false, "lora_cpu kernels are not built for this CPU");
}
void NarrowTransposedTimesRows(const float*, int64_t, int64_t, const float*, int64_t, float, const RowMask*, float*) {
  TORCH_CHECK(false, "lora_cpu kernels are not built for this CPU");
}
void NarrowTimesWide(const float*, int64_t, int64_t, const float*, int64_t, float, const RowMask*, bool, float*) {
  TORCH_CHECK(false, "lora_cpu kernels are not built for this CPU");
}

#endif

}  // namespace polytune::engine::lora_cpu
