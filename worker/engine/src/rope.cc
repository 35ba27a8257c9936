#include "polytune/engine/rope.h"

#include <cmath>

namespace polytune::engine {

at::Tensor RopeInverseFrequencies(const ModelConfig& config) {
  const int64_t d = config.head_dim;
  // 1 / theta^(arange(0, d, 2) / d), in fp32 like transformers.
  at::Tensor exponents = at::arange(0, d, 2, at::kLong).to(at::kFloat) / static_cast<double>(d);
  at::Tensor inv_freq = at::pow(config.rope_theta, exponents).reciprocal();
  if (!config.rope_scaling) return inv_freq;
  const RopeScaling& s = *config.rope_scaling;
  if (s.type == RopeScaling::Type::kLinear) return inv_freq / s.factor;
  // Llama 3: long wavelengths slowed by `factor`, short ones kept, a smooth blend between.
  const double old_len = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / s.low_freq_factor;
  const double high_freq_wavelen = old_len / s.high_freq_factor;
  at::Tensor wavelen = 2 * M_PI / inv_freq;
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  at::Tensor smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  at::Tensor is_medium =
      at::logical_not(wavelen < high_freq_wavelen).logical_and(at::logical_not(wavelen > low_freq_wavelen));
  return at::where(is_medium, smoothed, scaled);
}

std::pair<at::Tensor, at::Tensor> RopeCosSin(const at::Tensor& inv_freq, const at::Tensor& position_ids) {
  at::Tensor freqs = position_ids.to(at::kFloat).unsqueeze(-1) * inv_freq.to(position_ids.device()).view({1, 1, -1});
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.slice(-1, 0, half);
  at::Tensor x2 = x.slice(-1, half);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  at::Tensor c = cos.unsqueeze(1).to(x.scalar_type());
  at::Tensor s = sin.unsqueeze(1).to(x.scalar_type());
  return x * c + rotated * s;
}

}  // namespace polytune::engine
