#include "cross_entropy_rows.h"

#include <cmath>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>

#include "bf16_bits.h"
#include "vector_exp.h"

namespace polytune::engine {
namespace {

constexpr int kLanes = 16;

// Row maximum (as float) over bf16 bits, in kLanes independent lanes so it vectorises.
POLYTUNE_ALWAYS_INLINE float RowMaxImpl(const uint16_t* x, int64_t n) {
  float lane[kLanes];
  for (int l = 0; l < kLanes; ++l) lane[l] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float v = Bf16ToFloat(x[i + l]);
      lane[l] = v > lane[l] ? v : lane[l];
    }
  float m = -std::numeric_limits<float>::infinity();
  for (; i < n; ++i) m = std::max(m, Bf16ToFloat(x[i]));
  for (int l = 0; l < kLanes; ++l) m = std::max(m, lane[l]);
  return m;
}

// e[i] = exp(x[i] - m) into `e`; returns their sum, accumulated in kLanes lanes in a fixed order.
POLYTUNE_ALWAYS_INLINE float ExpAndSumImpl(const uint16_t* x, float m, float* e, int64_t n) {
  for (int64_t i = 0; i < n; ++i) e[i] = ExpClamped(Bf16ToFloat(x[i]) - m);
  float lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += e[i + l];
  float s = 0;
  for (int l = 0; l < kLanes; ++l) s += lane[l];
  for (; i < n; ++i) s += e[i];
  return s;
}

POLYTUNE_ALWAYS_INLINE void GradientImpl(const float* e, float scale, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = FloatToBf16(e[i] * scale);
}

// POLYTUNE_VECTOR_KERNEL wants void functions: results through pointers.
POLYTUNE_ALWAYS_INLINE void RowMaxIntoImpl(const uint16_t* x, int64_t n, float* m) { *m = RowMaxImpl(x, n); }
POLYTUNE_ALWAYS_INLINE void ExpAndSumIntoImpl(const uint16_t* x, float m, float* e, int64_t n, float* s) {
  *s = ExpAndSumImpl(x, m, e, n);
}
POLYTUNE_VECTOR_KERNEL(RowMaxInto, (const uint16_t* x, int64_t n, float* m), (x, n, m))
POLYTUNE_VECTOR_KERNEL(ExpAndSumInto, (const uint16_t* x, float m, float* e, int64_t n, float* s), (x, m, e, n, s))
POLYTUNE_VECTOR_KERNEL(Gradient, (const float* e, float scale, uint16_t* out, int64_t n), (e, scale, out, n))

}  // namespace

at::Tensor CrossEntropyRowsBf16(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& weights,
                                bool gradient) {
  TORCH_CHECK(logits.is_cpu() && logits.scalar_type() == at::kBFloat16 && logits.dim() == 2 && logits.is_contiguous(),
              "CrossEntropyRowsBf16: contiguous bf16 [rows, vocab] on CPU");
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const at::Tensor t = targets.to(at::kLong).contiguous(), w = weights.to(at::kFloat).contiguous();
  TORCH_CHECK(t.numel() == rows && w.numel() == rows, "CrossEntropyRowsBf16: one target and weight per row");
  at::Tensor loss = at::empty({rows}, at::kFloat);
  uint16_t* x = Elements<uint16_t>(logits);
  const int64_t* tp = t.data_ptr<int64_t>();
  const float* wp = w.data_ptr<float>();
  float* lp = loss.data_ptr<float>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> e(vocab);
    for (int64_t r = begin; r < end; ++r) {
      uint16_t* row = x + r * vocab;
      const int64_t target = tp[r];
      TORCH_CHECK(target >= 0 && target < vocab, "cross-entropy target ", target, " outside the vocabulary");
      float m = 0;
      RowMaxInto(row, vocab, &m);
      if (std::isinf(m)) m = 0;  // as at::logsumexp: an infinite maximum is not subtracted
      float s = 0;
      ExpAndSumInto(row, m, e.data(), vocab, &s);
      const float target_logit = Bf16ToFloat(row[target]);
      lp[r] = wp[r] * ((std::log(s) + m) - target_logit);
      if (gradient) {
        const float scale = wp[r] / s;
        Gradient(e.data(), scale, row, vocab);
        row[target] = FloatToBf16((e[target] / s - 1.0f) * wp[r]);
      }
    }
  });
  return loss;
}

}  // namespace polytune::engine
