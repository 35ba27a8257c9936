#include "polytune/engine/lora.h"

#include <cmath>
#include <cstring>

#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>

namespace polytune::engine {
namespace {

const char* const kProjNames[kNumProjKinds] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

uint64_t SplitMix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int64_t AsSigned(uint64_t v) {
  int64_t s;
  std::memcpy(&s, &v, sizeof(s));
  return s;
}

// Logical right shift of an int64 tensor holding uint64 bit patterns.
at::Tensor ShiftRightLogical(const at::Tensor& z, int k) {
  return at::bitwise_and(at::bitwise_right_shift(z, k), AsSigned((~0ULL) >> k));
}

}  // namespace

const char* ProjName(ProjKind kind) { return kProjNames[static_cast<int>(kind)]; }

const char* ProjParentName(ProjKind kind) {
  return static_cast<int>(kind) <= static_cast<int>(ProjKind::kO) ? "self_attn" : "mlp";
}

bool ParseProjName(const std::string& name, ProjKind* kind) {
  for (int i = 0; i < kNumProjKinds; ++i) {
    if (name == kProjNames[i]) {
      *kind = static_cast<ProjKind>(i);
      return true;
    }
  }
  return false;
}

double LoraSettings::Scaling() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

bool LoraSettings::TargetsLayer(int64_t layer) const {
  if (layers.empty()) return true;
  for (int64_t l : layers)
    if (l == layer) return true;
  return false;
}

bool LoraSettings::TargetsModule(ProjKind kind) const {
  for (const auto& m : target_modules)
    if (m == ProjName(kind)) return true;
  return false;
}

LoraAdapter LoraAdapter::Create(int64_t in_features, int64_t out_features, const LoraSettings& settings, uint64_t seed,
                                const at::Device& device) {
  LoraAdapter adapter;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  at::Tensor a = at::empty({settings.r, in_features}, at::kFloat);
  a.uniform_(-bound, bound, gen);
  adapter.a = a.to(device).set_requires_grad(true);
  adapter.b = at::zeros({out_features, settings.r}, at::TensorOptions().dtype(at::kFloat).device(device)).set_requires_grad(true);
  adapter.scaling = settings.Scaling();
  adapter.dropout = settings.dropout;
  return adapter;
}

at::Tensor LoraDropoutMask(const at::Tensor& x, double p, const DropoutKey& key) {
  const int64_t rows = x.size(0);
  const int64_t per_row = x.numel() / rows;
  TORCH_CHECK(key.example_ids != nullptr && static_cast<int64_t>(key.example_ids->size()) == rows,
              "LoRA dropout needs one example id per batch row");
  std::vector<int64_t> row_keys(rows);
  for (int64_t r = 0; r < rows; ++r) {
    uint64_t h = SplitMix64(key.seed);
    h = SplitMix64(h ^ static_cast<uint64_t>(key.step));
    h = SplitMix64(h ^ static_cast<uint64_t>((*key.example_ids)[r]));
    h = SplitMix64(h ^ static_cast<uint64_t>(key.layer));
    h = SplitMix64(h ^ static_cast<uint64_t>(key.module));
    row_keys[r] = AsSigned(h);
  }
  const auto opts = at::TensorOptions().dtype(at::kLong).device(x.device());
  at::Tensor z = at::from_blob(row_keys.data(), {rows, 1}, at::kLong).to(x.device()) +
                 at::arange(per_row, opts).mul(AsSigned(0x9e3779b97f4a7c15ULL)).unsqueeze(0);
  // SplitMix64 finaliser; int64 multiplication wraps like uint64.
  z = at::bitwise_xor(z, ShiftRightLogical(z, 30)).mul(AsSigned(0xbf58476d1ce4e5b9ULL));
  z = at::bitwise_xor(z, ShiftRightLogical(z, 27)).mul(AsSigned(0x94d049bb133111ebULL));
  z = at::bitwise_xor(z, ShiftRightLogical(z, 31));
  // Top 24 bits as a uniform in [0, 1).
  at::Tensor u = ShiftRightLogical(z, 40).to(at::kFloat).mul(1.0 / 16777216.0);
  at::Tensor keep = (u >= p).to(x.scalar_type()).mul(1.0 / (1.0 - p));
  return keep.view(x.sizes());
}

at::Tensor LoraAdapter::Forward(const at::Tensor& x, bool training, const DropoutKey& key) const {
  at::Tensor input = x;
  if (training && dropout > 0.0) input = x * LoraDropoutMask(x, dropout, key);
  const auto dtype = x.scalar_type();
  at::Tensor h = at::matmul(input, a.to(dtype).t());
  return at::matmul(h, b.to(dtype).t()).mul(scaling);
}

}  // namespace polytune::engine
