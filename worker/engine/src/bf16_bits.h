// bf16 <-> float on raw bits for the engine's CPU loops, written as plain integer and float
// arithmetic so GCC vectorises them (c10::BFloat16's conversions go through a union and a
// std::isnan call per element). The rounding is c10's exactly: round to nearest, ties to even,
// any NaN to the quiet NaN 0x7FC0. So a loop that computes in float and stores through
// FloatToBf16 writes the bits the same computation in libtorch's bf16 ops writes.
#pragma once

#include <cstdint>
#include <cstring>

#include <type_traits>

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>

namespace polytune::engine {

// The vector kernels' helpers and bodies must be inlined into each target-specific variant
// (POLYTUNE_VECTOR_KERNEL below), or GCC compiles them once for the baseline and calls that.
#if defined(__GNUC__)
#define POLYTUNE_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define POLYTUNE_ALWAYS_INLINE inline
#endif

POLYTUNE_ALWAYS_INLINE float Bf16ToFloat(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof(f));
  return f;
}

// Branch-free (a select on a float compare kept GCC from vectorising the loops that call it).
POLYTUNE_ALWAYS_INLINE uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  const uint32_t rounded = (u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16;
  const uint32_t nan = 0u - static_cast<uint32_t>((u & 0x7FFFFFFFu) > 0x7F800000u);  // all ones for NaN
  return static_cast<uint16_t>((rounded & ~nan) | (0x7FC0u & nan));
}

// A float rounded to bf16 and back: the value libtorch's bf16 ops would store.
POLYTUNE_ALWAYS_INLINE float RoundToBf16(float f) { return Bf16ToFloat(FloatToBf16(f)); }

inline const uint16_t* Bf16Bits(const c10::BFloat16* p) { return reinterpret_cast<const uint16_t*>(p); }
inline uint16_t* Bf16Bits(c10::BFloat16* p) { return reinterpret_cast<uint16_t*>(p); }

// The elements of a contiguous float or bf16 tensor, as the loops templated on the stored
// type (float or bf16 bits) take them.
template <typename T>
T* Elements(const at::Tensor& t) {
  if constexpr (std::is_same_v<T, float>)
    return t.data_ptr<float>();
  else
    return Bf16Bits(t.data_ptr<at::BFloat16>());
}

// Element access for loops templated on the stored type (float or bf16 bits).
POLYTUNE_ALWAYS_INLINE float LoadAsFloat(const float* p, int64_t i) { return p[i]; }
POLYTUNE_ALWAYS_INLINE float LoadAsFloat(const uint16_t* p, int64_t i) { return Bf16ToFloat(p[i]); }
POLYTUNE_ALWAYS_INLINE void StoreFromFloat(float* p, int64_t i, float v) { p[i] = v; }
POLYTUNE_ALWAYS_INLINE void StoreFromFloat(uint16_t* p, int64_t i, float v) { p[i] = FloatToBf16(v); }

// Vector kernels built three ways and picked at run time by what the CPU runs: AVX-512 with
// the 16-bit lanes bf16 needs (BW; GCC 12's target_clones cannot dispatch on BW), AVX2, and
// the baseline x86-64 the engine is compiled for (SSE2, which has no 32-bit vector multiply).
// POLYTUNE_VECTOR_KERNEL(Name, (params), (args)) defines Name(params), calling NameImpl(args)
// compiled for the widest of the three this CPU has; NameImpl is a POLYTUNE_ALWAYS_INLINE
// (template) function.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
inline int CpuVectorLevel() {
  static const int level = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") ? 2
                           : __builtin_cpu_supports("avx2")                                         ? 1
                                                                                                    : 0;
  return level;
}
#define POLYTUNE_VECTOR_KERNEL(Name, params, args)                                                            \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) void Name##Avx512 params { Name##Impl args; } \
  __attribute__((target("avx2"))) void Name##Avx2 params { Name##Impl args; }                                 \
  void Name##Baseline params { Name##Impl args; }                                                             \
  void Name params {                                                                                          \
    switch (CpuVectorLevel()) {                                                                               \
      case 2:                                                                                                 \
        return Name##Avx512 args;                                                                             \
      case 1:                                                                                                 \
        return Name##Avx2 args;                                                                               \
      default:                                                                                                \
        return Name##Baseline args;                                                                           \
    }                                                                                                         \
  }
#else
#define POLYTUNE_VECTOR_KERNEL(Name, params, args) \
  void Name params { Name##Impl args; }
#endif

}  // namespace polytune::engine
