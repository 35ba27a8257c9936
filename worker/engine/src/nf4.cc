#include "polytune/engine/nf4.h"

// at::NoGradGuard: libtorch 2.x no longer declares it through <ATen/ATen.h>.
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <ATen/Parallel.h>

#include "bf16_bits.h"

// AVX-512 paths for NF4 (quantisation and dequantisation), chosen at run time where the CPU
// has it; GCC on x86-64 only, like the engine's other vector kernels.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define POLYTUNE_NF4_AVX512 1
#endif

namespace polytune::engine {
namespace {

at::Tensor CodeTensor(const float* values, int64_t n, const at::Device& device) {
  return at::from_blob(const_cast<float*>(values), {n}, at::kFloat).to(device);
}

// Midpoints between consecutive sorted code values, each (a + b) * 0.5 in float.
std::vector<float> MidpointValues(const float* values, int64_t n) {
  std::vector<float> mids(n - 1);
  for (int64_t i = 0; i + 1 < n; ++i) mids[i] = (values[i] + values[i + 1]) * 0.5f;
  return mids;
}

// The midpoints as a tensor. bucketize(x, midpoints) with right=false returns the number of
// midpoints strictly below x, i.e. a value exactly on a midpoint goes to the lower code, as
// bitsandbytes' `x > midpoint` decision tree does.
at::Tensor Midpoints(const float* values, int64_t n, const at::Device& device) {
  std::vector<float> mids = MidpointValues(values, n);
  return at::from_blob(mids.data(), {n - 1}, at::kFloat).clone().to(device);
}

// Pads a flat fp32 tensor with zeros to a multiple of `block` and views it as [nblocks, block].
at::Tensor Blocked(const at::Tensor& flat, int64_t block) {
  const int64_t n = flat.numel();
  const int64_t padded = (n + block - 1) / block * block;
  at::Tensor p = padded == n ? flat : at::constant_pad_nd(flat, {0, padded - n}, 0.0);
  return p.view({padded / block, block});
}

// Per-row absmax and indices of the nearest code value for a [nblocks, block] tensor.
std::pair<at::Tensor, at::Tensor> QuantizeBlocks(const at::Tensor& blocks, const at::Tensor& midpoints) {
  at::Tensor absmax = blocks.abs().amax(1);
  // Multiply by the reciprocal, as bitsandbytes' kernel does. An all-zero block has absmax 0:
  // its values normalise to 0 instead of NaN.
  at::Tensor inv = at::where(absmax > 0, absmax.reciprocal(), at::zeros_like(absmax));
  at::Tensor normed = blocks * inv.unsqueeze(1);
  at::Tensor idx = at::bucketize(normed, midpoints, /*out_int32=*/false, /*right=*/false).to(at::kByte);
  return {absmax, idx};
}

}  // namespace

const std::array<float, 16>& Nf4CodeBook() {
  static const std::array<float, 16> kCode = {-1.0f,
                                              -0.6961928009986877f,
                                              -0.5250730514526367f,
                                              -0.39491748809814453f,
                                              -0.28444138169288635f,
                                              -0.18477343022823334f,
                                              -0.09105003625154495f,
                                              0.0f,
                                              0.07958029955625534f,
                                              0.16093020141124725f,
                                              0.24611230194568634f,
                                              0.33791524171829224f,
                                              0.44070982933044434f,
                                              0.5626170039176941f,
                                              0.7229568362236023f,
                                              1.0f};
  return kCode;
}

const std::array<float, 256>& DynamicMap8Bit() {
  static const std::array<float, 256> kMap = [] {
    // bitsandbytes builds the map with torch ops (float32 linspace, midpoints, times a
    // Python float); the same ops here give the same float32 values bit for bit.
    std::vector<float> data;
    const int max_exponent_bits = 7;
    for (int i = 0; i < max_exponent_bits; ++i) {
      const int64_t fraction_items = (int64_t{1} << i) + 1;
      at::Tensor bounds = at::linspace(0.1, 1.0, fraction_items, at::kFloat);
      at::Tensor means = (bounds.slice(0, 0, fraction_items - 1) + bounds.slice(0, 1)) / 2.0;
      const double scale = std::pow(10.0, -(max_exponent_bits - 1) + i);
      at::Tensor pos = (means * scale).contiguous(), neg = (means * -scale).contiguous();
      data.insert(data.end(), pos.data_ptr<float>(), pos.data_ptr<float>() + pos.numel());
      data.insert(data.end(), neg.data_ptr<float>(), neg.data_ptr<float>() + neg.numel());
    }
    data.push_back(0.0f);
    data.push_back(1.0f);
    std::sort(data.begin(), data.end());
    std::array<float, 256> out{};
    std::copy(data.begin(), data.end(), out.begin());
    return out;
  }();
  return kMap;
}

int64_t Nf4Tensor::StorageBytes() const {
  int64_t bytes = packed.numel();
  if (double_quant)
    bytes += absmax_q.numel() + absmax2.numel() * 4 + 4;
  else
    bytes += absmax.numel() * 4;
  return bytes;
}

Nf4Tensor QuantizeNf4TensorOps(const at::Tensor& weight, bool double_quant) {
  at::NoGradGuard no_grad;
  const at::Device device = weight.device();
  Nf4Tensor q;
  q.shape = weight.sizes().vec();
  q.numel = weight.numel();
  at::Tensor flat = weight.detach().reshape({-1}).to(at::kFloat);
  static const auto& code = Nf4CodeBook();
  auto [absmax, idx] = QuantizeBlocks(Blocked(flat, kNf4BlockSize), Midpoints(code.data(), 16, device));
  // Drop the padding indices, pad to even length with index 7 (code 0.0), pack pairs.
  at::Tensor flat_idx = idx.reshape({-1}).slice(0, 0, q.numel);
  if (q.numel % 2 != 0) flat_idx = at::cat({flat_idx, at::full({1}, 7, flat_idx.options())});
  at::Tensor pairs = flat_idx.view({-1, 2});
  q.packed = at::bitwise_or(at::bitwise_left_shift(pairs.select(1, 0), 4), pairs.select(1, 1)).contiguous();
  if (!double_quant) {
    q.absmax = absmax.contiguous();
    return q;
  }
  q.double_quant = true;
  q.absmax_offset = absmax.mean().item<float>();
  static const auto& dyn = DynamicMap8Bit();
  auto [absmax2, idx2] =
      QuantizeBlocks(Blocked(absmax - q.absmax_offset, kDoubleQuantBlockSize), Midpoints(dyn.data(), 256, device));
  q.absmax_q = idx2.reshape({-1}).slice(0, 0, absmax.numel()).contiguous();
  q.absmax2 = absmax2.contiguous();
  return q;
}

namespace {

// The index at::bucketize(v, mids, right=false) gives: libtorch's lower bound, whose test
// !(mid >= v) also sends NaN past the last midpoint.
int64_t BucketIndex(const float* mids, int64_t n, float v) {
  int64_t start = 0, end = n;
  while (start < end) {
    const int64_t mid = start + ((end - start) >> 1);
    if (!(mids[mid] >= v))
      start = mid + 1;
    else
      end = mid;
  }
  return start;
}

// QuantizeBlocks' statistics for one block of n values (the zero padding of a last, partial
// block changes neither): absmax as amax finds it (NaN propagates), and the multiplier
// where(absmax > 0, 1 / absmax, 0).
std::pair<float, float> BlockScale(const float* x, int64_t n) {
  float m = 0.0f;
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    nan |= a != a;
    m = a > m ? a : m;
  }
  if (nan) {
    for (int64_t i = 0; i < n; ++i) {
      if (x[i] != x[i]) {
        m = std::fabs(x[i]);
        break;
      }
    }
  }
  return {m, m > 0.0f ? 1.0f / m : 0.0f};
}

// A value's code index: the number of the 15 midpoints bucketize puts below value * inv
// (!(mid >= v), so NaN counts past them all, as libtorch's lower bound sends it). PackNf4Scalar
// packs n (even) of them two per byte, the first value in the high nibble.
int Nf4Index(float value, float inv, const float* mid) {
  const float v = value * inv;
  int idx = 0;
  for (int j = 0; j < 15; ++j) idx += !(mid[j] >= v);
  return idx;
}

void PackNf4Scalar(const float* x, int64_t n, float inv, const float* mid, uint8_t* packed) {
  for (int64_t i = 0; i < n; i += 2)
    packed[i / 2] = static_cast<uint8_t>(Nf4Index(x[i], inv, mid) << 4 | Nf4Index(x[i + 1], inv, mid));
}

#ifdef POLYTUNE_NF4_AVX512
// A whole block of 64 values with AVX-512: 15 vector compares per 16 values (NGE: true for
// m < v and for NaN, as !(m >= v)), then the 64 indices packed into 32 bytes.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) void PackNf4BlockAvx512(const float* x, float inv,
                                                                                      const float* mid,
                                                                                      uint8_t* packed) {
  const __m512 scale = _mm512_set1_ps(inv);
  const __m512i one = _mm512_set1_epi32(1);
  __m128i bytes[4];
  for (int part = 0; part < 4; ++part) {
    const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + 16 * part), scale);
    __m512i count = _mm512_setzero_si512();
    for (int j = 0; j < 15; ++j) {
      const __mmask16 below = _mm512_cmp_ps_mask(_mm512_set1_ps(mid[j]), v, _CMP_NGE_UQ);
      count = _mm512_mask_add_epi32(count, below, count, one);
    }
    bytes[part] = _mm512_cvtepi32_epi8(count);
  }
  // 64 index bytes as 32 little-endian words (first | second << 8) -> first << 4 | second.
  const __m512i words =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(bytes[0]), bytes[1], 1)),
                         _mm256_inserti128_si256(_mm256_castsi128_si256(bytes[2]), bytes[3], 1), 1);
  const __m512i pairs = _mm512_or_si512(_mm512_and_si512(_mm512_slli_epi16(words, 4), _mm512_set1_epi16(0xF0)),
                                        _mm512_srli_epi16(words, 8));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(packed), _mm512_cvtepi16_epi8(pairs));
}
#endif

// CPU: QuantizeNf4TensorOps fused per block, in threads: the block's absmax and multiplier,
// each value's code index as the count of midpoints bucketize puts below it (the 15 tests
// vectorise), packed two per byte as it goes. The same float operations in the same order
// (this file is built without FMA contraction), so the same bytes; at::bucketize's binary
// search per element had taken ~22 ns per weight (minutes for an 8B model on 2 cores).
Nf4Tensor QuantizeNf4Cpu(const at::Tensor& weight, bool double_quant) {
  at::NoGradGuard no_grad;
  Nf4Tensor q;
  q.shape = weight.sizes().vec();
  q.numel = weight.numel();
  const at::Tensor flat = weight.detach().reshape({-1}).to(at::kFloat).contiguous();
  const float* x = flat.data_ptr<float>();
  const int64_t n = q.numel, blocks = q.num_blocks();
  static const std::vector<float> mids = MidpointValues(Nf4CodeBook().data(), 16);
  float mid[15];
  std::copy(mids.begin(), mids.end(), mid);
  at::Tensor absmax = at::empty({blocks}, at::kFloat);
  q.packed = at::empty({(n + 1) / 2}, at::kByte);
  float* am = absmax.data_ptr<float>();
  uint8_t* packed = q.packed.data_ptr<uint8_t>();
#ifdef POLYTUNE_NF4_AVX512
  const bool avx512 = CpuVectorLevel() == 2;
#endif
  at::parallel_for(0, blocks, 64, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * kNf4BlockSize, count = std::min(kNf4BlockSize, n - first);
      const auto [m, inv] = BlockScale(x + first, count);
      am[b] = m;
      const int64_t even = count / 2 * 2;
#ifdef POLYTUNE_NF4_AVX512
      if (avx512 && count == kNf4BlockSize)
        PackNf4BlockAvx512(x + first, inv, mid, packed + first / 2);
      else
        PackNf4Scalar(x + first, even, inv, mid, packed + first / 2);
#else
      PackNf4Scalar(x + first, even, inv, mid, packed + first / 2);
#endif
      // Only the tensor's last value can be unpaired: its low nibble is code 0.0 (index 7).
      if (count != even)
        packed[(first + even) / 2] = static_cast<uint8_t>(Nf4Index(x[first + even], inv, mid) << 4 | 7);
    }
  });
  if (!double_quant) {
    q.absmax = absmax;
    return q;
  }
  q.double_quant = true;
  q.absmax_offset = absmax.mean().item<float>();
  static const auto& dyn = DynamicMap8Bit();
  static const std::vector<float> dyn_mids = MidpointValues(dyn.data(), 256);
  const at::Tensor centred = (absmax - q.absmax_offset).contiguous();
  const float* c = centred.data_ptr<float>();
  const int64_t groups = (blocks + kDoubleQuantBlockSize - 1) / kDoubleQuantBlockSize;
  q.absmax2 = at::empty({groups}, at::kFloat);
  q.absmax_q = at::empty({blocks}, at::kByte);
  float* am2 = q.absmax2.data_ptr<float>();
  uint8_t* am_q = q.absmax_q.data_ptr<uint8_t>();
  at::parallel_for(0, groups, 16, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int64_t first = g * kDoubleQuantBlockSize, count = std::min(kDoubleQuantBlockSize, blocks - first);
      const auto [m, inv] = BlockScale(c + first, count);
      am2[g] = m;
      for (int64_t i = 0; i < count; ++i)
        am_q[first + i] = static_cast<uint8_t>(BucketIndex(dyn_mids.data(), 255, c[first + i] * inv));
    }
  });
  return q;
}

}  // namespace

Nf4Tensor QuantizeNf4(const at::Tensor& weight, bool double_quant) {
  if (weight.device().is_cpu()) return QuantizeNf4Cpu(weight, double_quant);
  return QuantizeNf4TensorOps(weight, double_quant);
}

at::Tensor Nf4BlockAbsmax(const Nf4Tensor& q) {
  if (!q.double_quant) return q.absmax;
  static const auto& dyn = DynamicMap8Bit();
  at::Tensor code2 = CodeTensor(dyn.data(), 256, q.absmax_q.device());
  at::Tensor values = code2.index_select(0, q.absmax_q.to(at::kLong));
  at::Tensor scale = q.absmax2.repeat_interleave(kDoubleQuantBlockSize).slice(0, 0, values.numel());
  return values * scale + q.absmax_offset;
}

namespace {

// One block's values from its scale: a 16-entry table of code[i] * scale, then a table load
// per value. T is float or bf16 bits (the fp32 value rounded once).
template <typename T>
void DequantizeBlockScalar(const uint8_t* packed, float scale, int64_t first, int64_t last, T* dst) {
  static const auto& code = Nf4CodeBook();
  T lut[16];
  for (int i = 0; i < 16; ++i) {
    const float v = code[i] * scale;
    if constexpr (std::is_same_v<T, float>)
      lut[i] = v;
    else
      lut[i] = FloatToBf16(v);
  }
  int64_t i = first;
  // Blocks start on even elements (64 is even), so pairs never straddle a block.
  for (; i + 1 < last; i += 2) {
    const uint8_t byte = packed[i >> 1];
    dst[i] = lut[byte >> 4];
    dst[i + 1] = lut[byte & 15];
  }
  if (i < last) dst[i] = lut[packed[i >> 1] >> 4];
}

#ifdef POLYTUNE_NF4_AVX512

// Whole blocks with AVX-512: the 16 scaled code values sit in the lanes of one register and
// every value is a lane permute by its nibble, where the scalar loop loads a table entry per
// value. The table is the scalar one (the same fp32 multiply, the same rounding to bf16), so
// the output is bit for bit the scalar path's. `packed` and `dst` point at the first block.
template <typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) void DequantizeWholeBlocksAvx512(const uint8_t* packed,
                                                                                               const float* scales,
                                                                                               int64_t count, T* dst) {
  static_assert(kNf4BlockSize == 64, "one block is 32 packed bytes, 64 values");
  const __m512 code = _mm512_loadu_ps(Nf4CodeBook().data());
  // Output word p of each 32-value half is byte p/2's high nibble (p even) or low nibble (p
  // odd): lane p/2 of `high` or, with bit 5 of the index set, of `low`.
  alignas(64) uint16_t first_half[32], second_half[32];
  for (int p = 0; p < 32; ++p) {
    first_half[p] = static_cast<uint16_t>((p / 2) | (p % 2 ? 32 : 0));
    second_half[p] = static_cast<uint16_t>((16 + p / 2) | (p % 2 ? 32 : 0));
  }
  const __m512i order0 = _mm512_load_si512(first_half), order1 = _mm512_load_si512(second_half);
  const __m512i nibble = _mm512_set1_epi16(15);
  for (int64_t b = 0; b < count; ++b) {
    const __m512i bytes = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(packed + 32 * b)));
    const __m512i high = _mm512_srli_epi16(bytes, 4), low = _mm512_and_si512(bytes, nibble);
    const __m512i idx0 = _mm512_permutex2var_epi16(high, order0, low);
    const __m512i idx1 = _mm512_permutex2var_epi16(high, order1, low);
    const __m512 values = _mm512_mul_ps(code, _mm512_set1_ps(scales[b]));
    T* out = dst + kNf4BlockSize * b;
    if constexpr (std::is_same_v<T, float>) {
      const __m512i parts[4] = {_mm512_cvtepu16_epi32(_mm512_castsi512_si256(idx0)),
                                _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(idx0, 1)),
                                _mm512_cvtepu16_epi32(_mm512_castsi512_si256(idx1)),
                                _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(idx1, 1))};
      for (int k = 0; k < 4; ++k) _mm512_storeu_ps(out + 16 * k, _mm512_permutexvar_ps(parts[k], values));
    } else {
      // FloatToBf16 on 16 lanes: round to nearest even, NaN to 0x7FC0.
      const __m512i u = _mm512_castps_si512(values);
      const __m512i rounded = _mm512_srli_epi32(
          _mm512_add_epi32(u, _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)),
                                               _mm512_set1_epi32(0x7FFF))),
          16);
      const __mmask16 nan =
          _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
      const __m512i bits = _mm512_mask_mov_epi32(rounded, nan, _mm512_set1_epi32(0x7FC0));
      const __m512i table = _mm512_castsi256_si512(_mm512_cvtepi32_epi16(bits));  // lanes 0-15; indices < 16
      _mm512_storeu_si512(out, _mm512_permutexvar_epi16(idx0, table));
      _mm512_storeu_si512(out + 32, _mm512_permutexvar_epi16(idx1, table));
    }
  }
}
#endif

// CPU fast path: one pass over the packed bytes writing fp32 or bf16 directly, blocks split
// across threads. The tensor-op path below needs five passes and three temporaries. In bf16
// each block's 16 values are rounded from their fp32 values once, so the result is the fp32
// one converted, bit for bit.
// Under double quantisation each block's absmax is rebuilt here, per block, as
// Nf4BlockAbsmax does with tensor ops (dyn[code] * absmax2, then + offset, each rounded to
// fp32; this file is built without FMA contraction), instead of by four tensor ops and their
// temporaries per call: those had cost as much as the dequantisation itself.
template <typename T>
void DequantizeNf4Cpu(const Nf4Tensor& q, T* dst) {
  static const auto& dyn = DynamicMap8Bit();
  const bool dq = q.double_quant;
  const at::Tensor absmax = dq ? at::Tensor() : q.absmax.contiguous();
  const at::Tensor absmax_q = dq ? q.absmax_q.contiguous() : at::Tensor();
  const at::Tensor absmax2 = dq ? q.absmax2.contiguous() : at::Tensor();
  const float* am = dq ? nullptr : absmax.data_ptr<float>();
  const uint8_t* am_q = dq ? absmax_q.data_ptr<uint8_t>() : nullptr;
  const float* am2 = dq ? absmax2.data_ptr<float>() : nullptr;
  const float offset = q.absmax_offset;
  const uint8_t* packed = q.packed.data_ptr<uint8_t>();
  const int64_t n = q.numel;
  const int64_t blocks = q.num_blocks();
  const int64_t whole_blocks = n / kNf4BlockSize;
#ifdef POLYTUNE_NF4_AVX512
  const bool avx512 = CpuVectorLevel() == 2;
#endif
  at::parallel_for(0, blocks, 256, [&](int64_t begin, int64_t end) {
    constexpr int64_t kChunk = 256;
    float scales[kChunk];
    for (int64_t chunk = begin; chunk < end; chunk += kChunk) {
      const int64_t count = std::min(kChunk, end - chunk);
      for (int64_t j = 0; j < count; ++j) {
        const int64_t b = chunk + j;
        if (dq) {
          const float centred = dyn[am_q[b]] * am2[b / kDoubleQuantBlockSize];
          scales[j] = centred + offset;
        } else {
          scales[j] = am[b];
        }
      }
      int64_t j = 0;
#ifdef POLYTUNE_NF4_AVX512
      if (avx512) {
        const int64_t whole = std::max<int64_t>(0, std::min(count, whole_blocks - chunk));
        DequantizeWholeBlocksAvx512(packed + chunk * kNf4BlockSize / 2, scales, whole, dst + chunk * kNf4BlockSize);
        j = whole;
      }
#endif
      for (; j < count; ++j) {
        const int64_t first = (chunk + j) * kNf4BlockSize;
        DequantizeBlockScalar(packed, scales[j], first, std::min(n, first + kNf4BlockSize), dst);
      }
    }
  });
}

}  // namespace

at::Tensor DequantizeNf4(const Nf4Tensor& q, at::ScalarType dtype) {
  at::NoGradGuard no_grad;
  if (q.packed.device().is_cpu()) {
    if (dtype == at::kBFloat16) {
      at::Tensor out = at::empty(q.shape, at::kBFloat16);
      DequantizeNf4Cpu(q, Elements<uint16_t>(out));
      return out;
    }
    at::Tensor out = at::empty(q.shape, at::kFloat);
    DequantizeNf4Cpu(q, out.data_ptr<float>());
    return dtype == at::kFloat ? out : out.to(dtype);
  }
  return DequantizeNf4TensorOps(q, dtype);
}

at::Tensor DequantizeNf4IntoScratch(const Nf4Tensor& q, at::Tensor* scratch, at::ScalarType dtype) {
  TORCH_CHECK(q.packed.device().is_cpu(), "DequantizeNf4IntoScratch is the CPU path");
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "DequantizeNf4IntoScratch: fp32 or bf16");
  at::NoGradGuard no_grad;
  if (!scratch->defined() || scratch->numel() < q.numel || scratch->scalar_type() != dtype)
    *scratch = at::empty({std::max(q.numel, scratch->defined() ? scratch->numel() : 0)}, at::dtype(dtype));
  if (dtype == at::kFloat)
    DequantizeNf4Cpu(q, scratch->data_ptr<float>());
  else
    DequantizeNf4Cpu(q, Elements<uint16_t>(*scratch));
  return scratch->narrow(0, 0, q.numel).view(q.shape);
}

at::Tensor DequantizeNf4TensorOps(const Nf4Tensor& q, at::ScalarType dtype) {
  at::NoGradGuard no_grad;
  // One gather per byte: a 256 x 2 table maps a packed byte to its (high, low) code values.
  // Cached per thread and device; a small upload per call would dominate small layers.
  thread_local at::Tensor cached_pairs;
  if (!cached_pairs.defined() || cached_pairs.device() != q.packed.device()) {
    static const auto& code = Nf4CodeBook();
    std::vector<float> pairs(512);
    for (int b = 0; b < 256; ++b) {
      pairs[2 * b] = code[b >> 4];
      pairs[2 * b + 1] = code[b & 15];
    }
    cached_pairs = at::from_blob(pairs.data(), {256, 2}, at::kFloat).clone().to(q.packed.device());
  }
  at::Tensor values = cached_pairs.index_select(0, q.packed.to(at::kLong)).reshape({-1});
  if (values.numel() != q.numel) values = values.slice(0, 0, q.numel);
  at::Tensor absmax = Nf4BlockAbsmax(q);
  at::Tensor scaled = Blocked(values, kNf4BlockSize) * absmax.unsqueeze(1);
  if (scaled.numel() != q.numel) return scaled.reshape({-1}).slice(0, 0, q.numel).view(q.shape).to(dtype);
  return scaled.view(q.shape).to(dtype);
}

}  // namespace polytune::engine
