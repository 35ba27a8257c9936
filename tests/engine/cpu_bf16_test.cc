// bf16 compute on the CPU (training.compute_dtype: bfloat16) against the fp32 path, which
// model_parity_test and lora_test hold to the independent references.
//
// Tolerances are the CUDA bf16 ones (cuda_test.cc): bf16 keeps 8 bits of mantissa, so logits
// through two layers agree within 3e-2 relative and the loss within 1e-2; LoRA gradients
// within 5e-2 of their largest element and pointing the same way (cosine > 0.995); a short
// training run ends within 2e-2 of the fp32 run's loss. Within bf16, everything that is
// bit-identical in fp32 stays so: checkpointing (with or without kept products) against plain
// backward, and a run against its repeat.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <random>

#include "nlohmann/json.hpp"
#include "polytune/engine/communicator.h"
#include "polytune/engine/llama_model.h"
#include "polytune/engine/loss.h"
#include "polytune/engine/model_loader.h"
#include "polytune/engine/trainer.h"
#include "reference_logits.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

const std::string kFixtures = POLYTUNE_FIXTURES;

std::unique_ptr<LlamaModel> Load(at::ScalarType dtype, Quantization q) {
  LoadOptions o;
  o.quantization = q;
  o.compute_dtype = dtype;
  auto m = LoadModel(kFixtures + "/models/llama_gqa", o);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

TEST(CpuBf16, ForwardMatchesTheFp32ReferenceLogits) {
  testing::ReferenceLogits ref;
  ASSERT_NO_FATAL_FAILURE(testing::LoadReferenceLogits(&ref));
  for (Quantization q : {Quantization::kNone, Quantization::kNf4}) {
    const std::string mode = q == Quantization::kNone ? "none" : "nf4_dq";
    auto model = Load(at::kBFloat16, q);
    at::NoGradGuard no_grad;
    at::Tensor logits = model->Forward(ref.input_ids).to(at::kFloat);
    const double error = testing::ExpectNearReference(ref, mode, logits, 3e-2, 1e-2, mode);
    EXPECT_GT(error, 1e-6) << mode << ": not trivially close, bf16 does change the logits";
  }
}

// LoRA gradients through the NF4 base, with dropout and packed rows, in three backward modes.
struct GradientRun {
  at::Tensor loss;
  std::map<std::string, at::Tensor> grads;
};

GradientRun Gradients(at::ScalarType dtype, bool checkpointing, bool keeps) {
  at::manual_seed(5);
  auto model = Load(dtype, Quantization::kNf4);
  LoraSettings s;
  s.dropout = 0.1;
  model->AttachLora(s, 3);
  for (auto& layer : model->layers)
    for (auto& p : layer.proj) p.lora->b.detach().normal_(0, 0.02);
  at::Tensor ids = at::randint(0, 96, {2, 10}, at::TensorOptions().dtype(at::kLong));
  ForwardOptions fwd;
  fwd.training = true;
  fwd.gradient_checkpointing = checkpointing;
  fwd.checkpoint_keeps_projections = keeps;
  for (int64_t k = 0; k < 20; ++k) fwd.token_keys.push_back(DropoutTokenKey(1, 0, k / 10, k % 10));
  fwd.segment_ids = at::tensor({0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2}, at::kLong).view({2, 10});
  GradientRun run;
  run.loss = SumTokenCrossEntropy(model->Forward(ids, fwd), ids);
  run.loss.backward();
  for (auto& [n, p] : model->LoraParameters()) run.grads[n] = p.grad().clone();
  return run;
}

TEST(CpuBf16, LoraGradientsAreNearTheFp32OnesAndCheckpointingChangesNoBit) {
  const GradientRun fp32 = Gradients(at::kFloat, false, false);
  const GradientRun plain = Gradients(at::kBFloat16, false, false);
  ASSERT_EQ(plain.grads.size(), 2u * 7 * 2);
  EXPECT_NEAR(plain.loss.item<double>(), fp32.loss.item<double>(), 1e-2 * std::abs(fp32.loss.item<double>()));
  for (const auto& [n, g] : fp32.grads) {
    const at::Tensor b = plain.grads.at(n);
    EXPECT_EQ(b.scalar_type(), at::kFloat) << n << ": LoRA weights and their gradients stay fp32";
    EXPECT_LT(testing::RelativeMaxError(b, g), 5e-2) << n;
    const double cosine = (b.to(at::kDouble) * g.to(at::kDouble)).sum().item<double>() /
                          (b.norm().item<double>() * g.norm().item<double>());
    EXPECT_GT(cosine, 0.995) << n;
  }
  for (bool keeps : {false, true}) {
    const GradientRun ckpt = Gradients(at::kBFloat16, true, keeps);
    EXPECT_TRUE(plain.loss.equal(ckpt.loss)) << "keeps " << keeps;
    for (const auto& [n, g] : plain.grads) EXPECT_TRUE(g.equal(ckpt.grads.at(n))) << "keeps " << keeps << ": " << n;
  }
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Ten optimizer steps through the trainer with training.compute_dtype: bfloat16.
TEST(CpuBf16, TrainingEndsNearTheFp32RunAndRepeatsBitForBit) {
  testing::TempDir tmp;
  const std::string data = tmp / "data.jsonl";
  {
    std::ofstream out(data);
    for (int i = 0; i < 16; ++i) {
      nlohmann::json ids = nlohmann::json::array();
      for (int t = 0; t < 24; ++t) ids.push_back(static_cast<int>((i * 7 + t * (i % 3 + 1)) % 96));
      out << nlohmann::json{{"input_ids", ids}, {"lang", i % 2 ? "es" : "de"}}.dump() << "\n";
    }
  }
  struct Result {
    double final_loss;
    std::string adapter;
  };
  auto train = [&](const std::string& dtype, const std::string& name) -> Result {
    TrainConfig cfg;
    cfg.model.path = kFixtures + "/models/llama_gqa";
    cfg.data.train = spec::DatasetRef::Path(data);
    cfg.data.max_seq_len = 24;
    cfg.training.max_steps = 10;
    cfg.training.micro_batch_size = 4;
    cfg.training.lr = 3e-3;
    cfg.training.device = "cpu";
    cfg.training.compute_dtype = dtype;
    cfg.output_dir = tmp / name;
    auto comm = MakeSingleProcessCommunicator();
    TrainRunOptions opts;
    opts.progress = false;
    auto summary = RunTraining(cfg, *comm, opts);
    EXPECT_TRUE(summary.ok()) << summary.status();
    if (!summary.ok()) return {0, ""};
    EXPECT_EQ(summary->steps, 10);
    return {summary->final_loss, ReadAll(summary->adapter_dir + "/adapter_model.safetensors")};
  };
  const Result fp32 = train("float32", "fp32"), bf16 = train("bfloat16", "bf16"), again = train("bfloat16", "again");
  ASSERT_TRUE(std::isfinite(bf16.final_loss));
  EXPECT_NEAR(bf16.final_loss, fp32.final_loss, 2e-2 * fp32.final_loss) << "fp32 " << fp32.final_loss;
  EXPECT_NE(bf16.final_loss, fp32.final_loss) << "the bf16 run must not have run in fp32";
  ASSERT_FALSE(bf16.adapter.empty());
  EXPECT_EQ(bf16.adapter, again.adapter) << "a bf16 run repeats bit for bit";
  EXPECT_NE(bf16.adapter, fp32.adapter);
}

}  // namespace
}  // namespace polytune::engine
