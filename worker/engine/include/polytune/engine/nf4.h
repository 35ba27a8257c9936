// 4-bit NormalFloat (NF4) storage, byte-compatible with bitsandbytes.
//
// The weight is flattened row-major and cut into blocks of 64 values; each block stores an
// fp32 absmax and 64 4-bit indices into the 16-entry NF4 code book, two per byte with the
// even element in the high nibble. Optional double quantisation stores the absmax vector as
// uint8 indices into bitsandbytes' signed dynamic map (blocks of 256, each with an fp32
// absmax) plus an fp32 offset (the mean absmax).
//
// All operations are plain tensor ops, so they run on whatever device the tensors live on.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

namespace polytune::engine {

constexpr int64_t kNf4BlockSize = 64;
constexpr int64_t kDoubleQuantBlockSize = 256;

// The 16 NF4 code values (bitsandbytes' table).
const std::array<float, 16>& Nf4CodeBook();

// bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256
// sorted values in [-1, 1].
const std::array<float, 256>& DynamicMap8Bit();

struct Nf4Tensor {
  std::vector<int64_t> shape;  // original shape
  int64_t numel = 0;
  at::Tensor packed;  // uint8 [ceil(numel / 2)]
  // Without double quantisation: fp32 absmax per 64-block.
  at::Tensor absmax;
  // With double quantisation: absmax is empty and these are set.
  bool double_quant = false;
  at::Tensor absmax_q;  // uint8 [nblocks]
  at::Tensor absmax2;   // fp32 [ceil(nblocks / 256)]
  float absmax_offset = 0.0f;

  int64_t num_blocks() const { return (numel + kNf4BlockSize - 1) / kNf4BlockSize; }
  // Bytes used by the packed weights and their statistics.
  int64_t StorageBytes() const;
};

// Quantises `weight` (any float dtype; computed in fp32 on its device). On CPU a fused loop
// per block; elsewhere QuantizeNf4TensorOps. Both give the same bytes.
Nf4Tensor QuantizeNf4(const at::Tensor& weight, bool double_quant);
// The device-generic implementation (tensor ops, at::bucketize) that CUDA uses. Exposed so
// tests on CPU-only machines hold the fused CPU loop to it.
Nf4Tensor QuantizeNf4TensorOps(const at::Tensor& weight, bool double_quant);

// The per-block absmax as fp32 (dequantising it first under double quantisation).
at::Tensor Nf4BlockAbsmax(const Nf4Tensor& q);

// Dequantises to `dtype` with the original shape: code[index] * absmax in fp32, then cast.
at::Tensor DequantizeNf4(const Nf4Tensor& q, at::ScalarType dtype);
// CPU, fp32 or bf16: the same values written into `*scratch` (grown when too small, never
// shrunk; replaced when the dtype changes), so a caller that dequantises weight after weight
// allocates (and page-faults) nothing per call. The result aliases *scratch and is valid until
// the next call with the same scratch.
at::Tensor DequantizeNf4IntoScratch(const Nf4Tensor& q, at::Tensor* scratch, at::ScalarType dtype = at::kFloat);

// The device-generic implementation (plain tensor ops) that CUDA uses; CPU has a fused
// loop. Exposed so tests on CPU-only machines keep the accelerator path honest.
at::Tensor DequantizeNf4TensorOps(const Nf4Tensor& q, at::ScalarType dtype);

}  // namespace polytune::engine
