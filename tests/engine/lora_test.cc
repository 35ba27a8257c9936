#include <gtest/gtest.h>

#include "polytune/engine/llama_model.h"
#include "polytune/engine/loss.h"
#include "polytune/engine/model_loader.h"
#include "polytune/engine/safetensors.h"
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
  fwd.dropout_seed = 9;
  fwd.step = 4;
  fwd.example_ids = {17, 18};
  auto loss = [&] { return SumTokenCrossEntropy(model->Forward(ids, fwd), labels) / 15.0; };
  loss().backward();
  const double h = 1e-6;
  int checked = 0;
  for (auto& [name, param] : model->LoraParameters()) {
    if (name.find("layers.0.self_attn.q_proj") == std::string::npos && name.find("layers.1.mlp.down_proj") == std::string::npos)
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

TEST(Lora, CheckpointingGivesSameGradientsAsPlainBackward) {
  std::map<std::string, at::Tensor> grads[2];
  for (int mode = 0; mode < 2; ++mode) {
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
    fwd.gradient_checkpointing = mode == 1;
    fwd.example_ids = {0, 1};
    SumTokenCrossEntropy(model->Forward(ids, fwd), ids).backward();
    for (auto& [n, p] : model->LoraParameters()) grads[mode][n] = p.grad().clone();
  }
  for (auto& [n, g] : grads[0]) EXPECT_TRUE(g.allclose(grads[1][n], 1e-5, 1e-7)) << n;
}

TEST(Lora, DropoutMaskCpuLoopEqualsTensorOps) {
  std::vector<int64_t> ids = {3, 1000003, 77};
  DropoutKey key{42, 9, 2, 6, &ids};
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

TEST(Lora, DropoutMaskDependsOnExampleNotBatchPosition) {
  at::Tensor x = at::ones({2, 5, 8});
  std::vector<int64_t> ids = {40, 41};
  DropoutKey key{1, 2, 3, 4, &ids};
  at::Tensor m = LoraDropoutMask(x, 0.5, key);
  std::vector<int64_t> single = {41};
  DropoutKey key1{1, 2, 3, 4, &single};
  at::Tensor m1 = LoraDropoutMask(at::ones({1, 3, 8}), 0.5, key1);
  // Same example, shorter sequence: the mask of its first 3 positions is identical.
  EXPECT_TRUE(m1[0].equal(m[1].slice(0, 0, 3)));
  const double kept = m.ne(0).to(at::kDouble).mean().item<double>();
  EXPECT_GT(kept, 0.3);
  EXPECT_LT(kept, 0.7);
  EXPECT_TRUE(m.eq(0).logical_or(m.eq(2.0)).all().item<bool>());
}

}  // namespace
}  // namespace polytune::engine
