// A vectorisable exp for the engine's CPU loops (fused SwiGLU, cross-entropy rows).
#pragma once

#include <cstdint>
#include <cstring>

#include "bf16_bits.h"

namespace polytune::engine {

// expf for vector loops: Cody-Waite reduction x = n ln2 + r (|r| <= ln2 / 2), a
// degree-7 Taylor polynomial for e^r (truncation 5e-9 relative, under the float rounding),
// and 2^n built in the exponent bits. x is clamped to [-87, 88], where 2^n stays a normal
// float; silu and softmax need no more (beyond that range sigmoid is 0 or 1 to float precision,
// and e^-87 = 1.6e-38 is nothing beside a softmax sum that holds e^0 = 1). Straight-line float and integer arithmetic,
// so GCC vectorises the loops.
POLYTUNE_ALWAYS_INLINE float ExpClamped(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Round x / ln2 to the nearest integer with the 1.5 * 2^23 trick (no float->int call).
  const float shifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  int32_t bits;
  std::memcpy(&bits, &t, sizeof(bits));
  bits -= 0x4B400000;                                           // the shifter's own bits: leaves n as an integer
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 split: hi exact, lo
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t scale_bits = (bits + 127) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof(scale));
  return p * scale;
}

}  // namespace polytune::engine
