#include <gtest/gtest.h>

#include "polytune/engine/llama_model.h"
#include "polytune/engine/loss.h"
#include "polytune/engine/model_loader.h"
#include "polytune/engine/safetensors.h"
#include "polytune/engine/token_dataset.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

const std::string kModel = std::string(POLYTUNE_FIXTURES) + "/models/llama_gqa";

std::unique_ptr<LlamaModel> Load(at::ScalarType dtype, Quantization q = Quantization::kNone) {
  LoadOptions o;
  o.quantization = q;
  o.compute_dtype = dtype;
  auto m = LoadModel(kModel, o);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

at::Tensor Ids() { return at::randint(0, 96, {2, 10}, at::TensorOptions().dtype(at::kLong)); }

TEST(Lora, ZeroBChangesNothing) {
  at::manual_seed(3);
  for (auto q : {Quantization::kNone, Quantization::kNf4}) {
    auto model = Load(at::kFloat, q);
    at::Tensor ids = Ids();
    at::NoGradGuard no_grad;
    at::Tensor before = model->Forward(ids);
    LoraSettings s;
    s.r = 4;
    s.dropout = 0.0;
    model->AttachLora(s, 1);
    EXPECT_EQ(model->LoraParameters().size(), 2u * 7 * 2);
    at::Tensor after = model->Forward(ids);
    EXPECT_TRUE(after.equal(before));
  }
}

TEST(Lora, InitialisationFollowsPeft) {
  auto model = Load(at::kFloat);
  LoraSettings s;
  s.r = 8;
  s.alpha = 16;
  model->AttachLora(s, 5);
  const auto& p = model->layers[0].proj[static_cast<int>(ProjKind::kGate)];
  ASSERT_TRUE(p.lora.has_value());
  EXPECT_EQ(p.lora->a.sizes(), (std::vector<int64_t>{8, 64}));
  EXPECT_EQ(p.lora->b.sizes(), (std::vector<int64_t>{160, 8}));
  EXPECT_TRUE(p.lora->b.eq(0).all().item<bool>());
  const double bound = 1.0 / std::sqrt(64.0);  // kaiming_uniform(a=sqrt(5)) on fan_in 64
  EXPECT_LE(p.lora->a.abs().max().item<double>(), bound);
  EXPECT_GT(p.lora->a.abs().max().item<double>(), 0.8 * bound);
  EXPECT_DOUBLE_EQ(p.lora->scaling, 2.0);
  s.rslora = true;
  EXPECT_DOUBLE_EQ(s.Scaling(), 16.0 / std::sqrt(8.0));
}

TEST(Lora, TargetsOnlyConfiguredLayersAndModules) {
  auto model = Load(at::kFloat);
  LoraSettings s;
  s.target_modules = {"q_proj", "down_proj"};
  s.layers = {1};
  model->AttachLora(s, 1);
  EXPECT_EQ(model->LoraParameters().size(), 4u);
  EXPECT_FALSE(model->layers[0].HasLora());
  EXPECT_TRUE(model->layers[1].proj[static_cast<int>(ProjKind::kQ)].lora.has_value());
  EXPECT_FALSE(model->layers[1].proj[static_cast<int>(ProjKind::kK)].lora.has_value());
  EXPECT_EQ(model->LoraParameters().count("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"), 1u);
}

// Analytic LoRA gradients (with dropout and activation checkpointing) against central
// finite differences, everything in float64.
void CheckGradients(bool checkpointing, double dropout) {
  at::manual_seed(11);
  auto model = Load(at::kDouble);
  LoraSettings s;
  s.r = 3;
  s.alpha = 6;
  s.dropout = dropout;
  model->AttachLora(s, 2);
  for (auto& layer : model->layers) {
    for (auto& p : layer.proj) {
      p.lora->a = p.lora->a.detach().to(at::kDouble).requires_grad_(true);
      p.lora->b = (at::randn(p.lora->b.sizes(), at::kDouble) * 0.1).requires_grad_(true);
    }
  }
  at::Tensor ids = Ids();
  at::Tensor labels = ids.clone();
  labels.index_put_({0, at::indexing::Slice(0, 3)}, -100);
  ForwardOptions fwd;
  fwd.training = true;
  fwd.gradient_checkpointing = checkpointing;
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t t = 0; t < 10; ++t) fwd.token_keys.push_back(DropoutTokenKey(9, 4, 17 + r, t));
  auto loss = [&] { return SumTokenCrossEntropy(model->Forward(ids, fwd), labels) / 15.0; };
  loss().backward();
  const double h = 1e-6;
  int checked = 0;
  for (auto& [name, param] : model->LoraParameters()) {
    if (name.find("layers.0.self_attn.q_proj") == std::string::npos &&
        name.find("layers.1.mlp.down_proj") == std::string::npos)
      continue;
    at::Tensor flat = param.detach().view({-1});
    at::Tensor grad = param.grad().view({-1});
    for (int64_t i : {int64_t{0}, flat.numel() / 2, flat.numel() - 1}) {
      const double orig = flat[i].item<double>();
      double lp, lm;
      {
        at::NoGradGuard ng;
        flat[i] = orig + h;
        lp = loss().item<double>();
        flat[i] = orig - h;
        lm = loss().item<double>();
        flat[i] = orig;
      }
      const double fd = (lp - lm) / (2 * h);
      const double an = grad[i].item<double>();
      EXPECT_NEAR(an, fd, 1e-6 * std::max(1.0, std::abs(fd))) << name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 12);
}

TEST(Lora, GradientsMatchFiniteDifferences) { CheckGradients(false, 0.0); }
TEST(Lora, GradientsMatchFiniteDifferencesWithCheckpointingAndDropout) { CheckGradients(true, 0.2); }

// Modes: plain backward, checkpointing, checkpointing that keeps the projection products;
// also with packed rows (attention per segment).
TEST(Lora, CheckpointingGivesSameGradientsAsPlainBackward) {
  for (bool packed : {false, true}) {
    std::map<std::string, at::Tensor> grads[3];
    at::Tensor loss[3];
    for (int mode = 0; mode < 3; ++mode) {
      at::manual_seed(5);
      auto model = Load(at::kFloat, Quantization::kNf4);
      LoraSettings s;
      s.dropout = 0.1;
      model->AttachLora(s, 3);
      for (auto& layer : model->layers)
        for (auto& p : layer.proj) p.lora->b.detach().normal_(0, 0.02);
      at::Tensor ids = Ids();
      ForwardOptions fwd;
      fwd.training = true;
      fwd.gradient_checkpointing = mode >= 1;
      fwd.checkpoint_keeps_projections = mode == 2;
      for (int64_t k = 0; k < 20; ++k) fwd.token_keys.push_back(DropoutTokenKey(1, 0, k / 10, k % 10));
      if (packed)
        fwd.segment_ids =
            at::tensor({0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2}, at::kLong).view({2, 10});
      loss[mode] = SumTokenCrossEntropy(model->Forward(ids, fwd), ids);
      loss[mode].backward();
      for (auto& [n, p] : model->LoraParameters()) grads[mode][n] = p.grad().clone();
    }
    // The same operations in the same order, so the same bits, although the recompute skips
    // down_proj's product (only its graph is needed) and, keeping the products, every other
    // projection's too.
    ASSERT_EQ(grads[0].size(), 2u * 7 * 2) << "a and b of seven projections in two layers";
    for (int mode = 1; mode < 3; ++mode) {
      EXPECT_TRUE(loss[0].equal(loss[mode])) << "packed " << packed << " mode " << mode;
      for (auto& [n, g] : grads[0])
        EXPECT_TRUE(g.equal(grads[mode][n])) << "packed " << packed << " mode " << mode << ": " << n;
    }
    // Not vacuous: the gradients are there and not all zero.
    EXPECT_GT(grads[2].begin()->second.abs().sum().item<double>(), 0);
  }
}

// A 2-D base output is accumulated into in place (no copy first); a 3-D one gets a new
// tensor. Same bits either way, forward and backward, with dropout.
TEST(Lora, AddToInPlaceEqualsTheOutOfPlaceGemm) {
  at::manual_seed(12);
  LoraSettings settings;
  settings.r = 4;
  settings.dropout = 0.1;
  LoraAdapter lora = LoraAdapter::Create(8, 6, settings, 5, at::kCPU);
  {
    at::NoGradGuard no_grad;
    lora.b.normal_(0, 0.5);
  }
  std::vector<int64_t> keys(12);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<int64_t>(i * 77 + 1);
  const DropoutKey key{1, 2, &keys};
  at::Tensor x0 = at::randn({3, 4, 8}), w = at::randn({6, 8}), upstream = at::randn({12, 6});
  auto run = [&](bool rows_2d) {
    lora.a.mutable_grad() = at::Tensor();
    lora.b.mutable_grad() = at::Tensor();
    at::Tensor x = x0.clone().requires_grad_(true);
    at::Tensor base = at::matmul(x, w.t());  // a fresh non-leaf, as FrozenLinear's output
    at::Tensor y = rows_2d ? lora.AddTo(base.reshape({12, 6}).clone(), x.reshape({12, 8}), true, key)
                           : lora.AddTo(base, x, true, key).reshape({12, 6});
    y.backward(upstream);
    return std::vector<at::Tensor>{y.detach(), x.grad(), lora.a.grad().clone(), lora.b.grad().clone()};
  };
  const auto in_place = run(true), out_of_place = run(false);
  for (size_t i = 0; i < in_place.size(); ++i) EXPECT_TRUE(at::equal(in_place[i], out_of_place[i])) << "tensor " << i;
  EXPECT_GT(in_place[2].abs().max().item<float>(), 0.0f);
}

TEST(Lora, DropoutMaskCpuLoopEqualsTensorOps) {
  std::vector<int64_t> keys;
  for (int64_t k = 0; k < 3 * 17; ++k) keys.push_back(DropoutTokenKey(42, 9, k / 17 + 1000, k % 17));
  DropoutKey key{2, 6, &keys};
  at::Tensor x = at::ones({3, 17, 33});
  EXPECT_TRUE(LoraDropoutMask(x, 0.1, key).equal(LoraDropoutMaskTensorOps(x, 0.1, key)));
  // The fused forward/backward applies exactly that mask.
  at::Tensor v = at::randn({3, 17, 33}).set_requires_grad(true);
  at::Tensor y = ApplyLoraDropout(v, 0.1, key);
  at::Tensor mask = LoraDropoutMask(v, 0.1, key);
  EXPECT_TRUE(y.equal(v.detach() * mask));
  at::Tensor g = at::randn({3, 17, 33});
  y.backward(g);
  EXPECT_TRUE(v.grad().equal(g * mask));
}

// Many rows, so the CPU loop splits across threads, and a row length that is no multiple of a
// vector width: the mask is still the tensor-op version's bit for bit.
TEST(Lora, DropoutMaskCpuLoopEqualsTensorOpsOnALargeBatch) {
  std::vector<int64_t> keys;
  for (int64_t k = 0; k < 4 * 301; ++k) keys.push_back(DropoutTokenKey(7, 3, k / 301, k % 301));
  DropoutKey key{5, 1, &keys};
  at::Tensor x = at::ones({4, 301, 701});
  for (double p : {0.05, 0.1, 0.5}) {
    at::Tensor mask = LoraDropoutMask(x, p, key);
    EXPECT_TRUE(mask.equal(LoraDropoutMaskTensorOps(x, p, key))) << "p " << p;
    const double kept = mask.ne(0).to(at::kDouble).mean().item<double>();
    EXPECT_NEAR(kept, 1.0 - p, 0.01) << "p " << p;
  }
  at::Tensor v = at::randn({4, 301, 701});
  EXPECT_TRUE(ApplyLoraDropout(v, 0.1, key).equal(v * LoraDropoutMask(v, 0.1, key)));
}

// bf16 activations (training.compute_dtype: bfloat16) take the fused CPU loop too: the same
// bits as libtorch's bf16 x * mask with the tensor-op mask (whose scale 1/(1-p) is rounded to
// bf16), forward and backward, including odd row lengths and a row split across threads.
TEST(Lora, DropoutInBf16EqualsTheTensorOpsProduct) {
  std::vector<int64_t> keys;
  for (int64_t k = 0; k < 4 * 301; ++k) keys.push_back(DropoutTokenKey(7, 3, k / 301, k % 301));
  DropoutKey key{5, 1, &keys};
  for (double p : {0.05, 0.1, 0.5}) {
    at::Tensor v = (at::randn({4, 301, 701}) * 3).to(at::kBFloat16).set_requires_grad(true);
    at::Tensor mask = LoraDropoutMaskTensorOps(v, p, key);
    ASSERT_EQ(mask.scalar_type(), at::kBFloat16);
    at::Tensor y = ApplyLoraDropout(v, p, key);
    ASSERT_EQ(y.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(y.equal(v.detach() * mask)) << "p " << p;
    at::Tensor g = at::randn({4, 301, 701}).to(at::kBFloat16);
    y.backward(g);
    EXPECT_TRUE(v.grad().equal(g * mask)) << "p " << p;
    EXPECT_NEAR(y.ne(0).to(at::kDouble).mean().item<double>(), 1.0 - p, 0.01) << "p " << p;
  }
}

TEST(Lora, DropoutMaskDependsOnTokenKeyNotBatchPosition) {
  // Example 41 as row 1 of a padded batch, and alone in a shorter batch.
  std::vector<int64_t> keys;
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t t = 0; t < 5; ++t) keys.push_back(DropoutTokenKey(1, 2, 40 + r, t));
  DropoutKey key{3, 4, &keys};
  at::Tensor m = LoraDropoutMask(at::ones({2, 5, 8}), 0.5, key);
  std::vector<int64_t> single;
  for (int64_t t = 0; t < 3; ++t) single.push_back(DropoutTokenKey(1, 2, 41, t));
  DropoutKey key1{3, 4, &single};
  at::Tensor m1 = LoraDropoutMask(at::ones({1, 3, 8}), 0.5, key1);
  EXPECT_TRUE(m1[0].equal(m[1].slice(0, 0, 3)));
  // Another module of the same layer gets another mask.
  DropoutKey other{3, 5, &keys};
  EXPECT_FALSE(LoraDropoutMask(at::ones({2, 5, 8}), 0.5, other).equal(m));
  const double kept = m.ne(0).to(at::kDouble).mean().item<double>();
  EXPECT_GT(kept, 0.3);
  EXPECT_LT(kept, 0.7);
  EXPECT_TRUE(m.eq(0).logical_or(m.eq(2.0)).all().item<bool>());
}

}  // namespace
}  // namespace polytune::engine

namespace polytune::engine {
namespace {

TEST(Packing, PackedLogitsEqualUnpackedPerExample) {
  for (const char* name : {"llama_gqa", "mistral_window"}) {
    LoadOptions o;
    o.quantization = Quantization::kNf4;
    auto model = LoadModel(std::string(POLYTUNE_FIXTURES) + "/models/" + name, o);
    ASSERT_TRUE(model.ok()) << model.status();
    TokenDataset d;
    d.examples.push_back({{5, 9, 2, 7, 7, 1, 3}, {}, 0});
    d.examples.push_back({{4, 4, 8, 1, 6, 6, 0, 2, 9}, {}, 0});
    d.examples.push_back({{3, 1, 4, 1, 5}, {}, 0});
    d.examples.push_back({{2, 7, 1, 8, 2, 8}, {}, 0});
    for (auto& e : d.examples) e.labels = e.input_ids;
    at::NoGradGuard ng;
    // Two rows of two examples, one with padding; spans of one length bucket share a padded batch.
    Batch packed = Collate(d, {0, 1, 2, 3}, {0, 1, 2, 3}, /*pack_len=*/16);
    ASSERT_EQ(packed.rows, 2);
    ForwardOptions fwd;
    fwd.segment_ids = packed.segment_ids;
    at::Tensor lp = (*model)->Logits((*model)->ForwardHidden(packed.input_ids, fwd, packed.position_ids));
    for (int e = 0; e < 4; ++e) {
      const int64_t len = static_cast<int64_t>(d.examples[e].input_ids.size());
      at::Tensor where = packed.segment_ids.eq(e).nonzero();  // [(row, t)...], in order
      ASSERT_EQ(where.size(0), len);
      const int64_t row = where[0][0].item<int64_t>(), offset = where[0][1].item<int64_t>();
      Batch single = Collate(d, {e}, {e});
      at::Tensor lu = (*model)->Forward(single.input_ids);
      EXPECT_LT(testing::RelativeMaxError(lp[row].slice(0, offset, offset + len), lu[0]), 1e-5)
          << name << " example " << e;
    }
  }
}

}  // namespace
}  // namespace polytune::engine
