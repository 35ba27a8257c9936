// The engine on CUDA against its own fp32 CPU path, which model_parity_test and lora_test hold
// to the independent references. Run by scripts/gpu-check.sh on the GPU machine; everywhere
// else (CI, Debian's CPU libtorch) each test skips, saying why.
//
// Tolerances: fp32 on CUDA equals the CPU within 1e-4 relative (TF32 is off for matmuls by
// default; only the summation order differs). bf16 compute keeps 8 bits of mantissa, so logits
// through two layers agree within 3e-2 relative and the loss within 1e-2; a short training run
// in bf16 ends within 2e-2 of the fp32 CPU run's loss.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cmath>
#include <fstream>
#include <map>
#include <random>

#include "nlohmann/json.hpp"
#include "polytune/common/json_util.h"
#include "polytune/engine/communicator.h"
#include "polytune/engine/llama_model.h"
#include "polytune/engine/loss.h"
#include "polytune/engine/model_loader.h"
#include "polytune/engine/nf4.h"
#include "polytune/engine/safetensors.h"
#include "polytune/engine/token_dataset.h"
#include "polytune/engine/trainer.h"
#include "reference_logits.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

const std::string kFixtures = POLYTUNE_FIXTURES;

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available())
      GTEST_SKIP() << "no CUDA device visible to this libtorch (a CPU build, or no GPU): the CUDA tests run in "
                      "scripts/gpu-check.sh on the GPU machine";
  }
};

TEST_F(Cuda, Nf4OnTheDeviceMatchesTheCpuBytesAndValues) {
  at::manual_seed(5);
  at::Tensor w = at::randn({384, 320});
  for (bool dq : {false, true}) {
    const Nf4Tensor cpu = QuantizeNf4(w, dq);
    const Nf4Tensor gpu = QuantizeNf4(w.cuda(), dq);
    // Quantisation rounds to the nearest code in fp32 on both; only exact ties may differ.
    const int64_t differing = gpu.packed.cpu().ne(cpu.packed).sum().item<int64_t>();
    EXPECT_LE(differing, cpu.packed.numel() / 10000) << "double_quant=" << dq;
    // Dequantising the same bytes is code * absmax in fp32 on both: equal.
    Nf4Tensor moved = cpu;
    moved.packed = cpu.packed.cuda();
    if (dq) {
      moved.absmax_q = cpu.absmax_q.cuda();
      moved.absmax2 = cpu.absmax2.cuda();
    } else {
      moved.absmax = cpu.absmax.cuda();
    }
    at::Tensor on_device = DequantizeNf4(moved, at::kFloat).cpu();
    EXPECT_TRUE(on_device.equal(DequantizeNf4(cpu, at::kFloat))) << "double_quant=" << dq;
    at::Tensor bf16 = DequantizeNf4(moved, at::kBFloat16).cpu();
    EXPECT_TRUE(bf16.equal(DequantizeNf4(cpu, at::kFloat).to(at::kBFloat16))) << "double_quant=" << dq;
  }
}

struct ForwardCase {
  Quantization quantization;
  at::ScalarType dtype;
  double logits_tolerance, loss_tolerance;
};

TEST_F(Cuda, ForwardMatchesTheFp32ReferenceLogits) {
  testing::ReferenceLogits ref;
  ASSERT_NO_FATAL_FAILURE(testing::LoadReferenceLogits(&ref));
  for (const ForwardCase& c : {ForwardCase{Quantization::kNone, at::kFloat, 1e-4, 1e-4},
                               ForwardCase{Quantization::kNf4, at::kFloat, 1e-4, 1e-4},
                               ForwardCase{Quantization::kNone, at::kBFloat16, 3e-2, 1e-2},
                               ForwardCase{Quantization::kNf4, at::kBFloat16, 3e-2, 1e-2}}) {
    const std::string mode = c.quantization == Quantization::kNone ? "none" : "nf4_dq";
    LoadOptions o;
    o.quantization = c.quantization;
    o.double_quant = true;
    o.device = at::Device(at::kCUDA, 0);
    o.compute_dtype = c.dtype;
    auto model = LoadModel(kFixtures + "/models/llama_gqa", o);
    ASSERT_TRUE(model.ok()) << model.status();
    at::NoGradGuard no_grad;
    at::Tensor logits = (*model)->Forward(ref.input_ids.cuda()).to(at::kFloat).cpu();
    testing::ExpectNearReference(ref, mode, logits, c.logits_tolerance, c.loss_tolerance,
                                 mode + " " + std::string(c10::toString(c.dtype)));
  }
}

// LoRA gradients through the NF4 base with checkpointing and dropout: CUDA fp32 against CPU fp32.
TEST_F(Cuda, LoraGradientsMatchTheCpu) {
  std::map<std::string, at::Tensor> grads[2];
  for (int d = 0; d < 2; ++d) {
    LoadOptions o;
    o.quantization = Quantization::kNf4;
    o.device = d == 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, 0);
    o.compute_dtype = at::kFloat;
    auto model = LoadModel(kFixtures + "/models/llama_gqa", o);
    ASSERT_TRUE(model.ok()) << model.status();
    LoraSettings s;
    s.r = 4;
    s.alpha = 8;
    s.dropout = 0.1;
    (*model)->AttachLora(s, 7);
    at::manual_seed(2);
    for (auto& layer : (*model)->layers)
      for (auto& p : layer.proj)  // B non-zero, so every gradient is non-trivial
        p.lora->b = (at::randn(p.lora->b.sizes()) * 0.05).to(o.device).requires_grad_(true);
    const at::Tensor ids = (at::arange(24, at::kLong) * 5).remainder(96).view({2, 12});
    ForwardOptions fwd;
    fwd.training = true;
    fwd.gradient_checkpointing = true;
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t t = 0; t < 12; ++t) fwd.token_keys.push_back(DropoutTokenKey(9, 4, 17 + r, t));
    at::Tensor logits = (*model)->Forward(ids.to(o.device), fwd);
    (SumTokenCrossEntropy(logits, ids.to(o.device)) / 22.0).backward();
    for (auto& [name, param] : (*model)->LoraParameters()) grads[d][name] = param.grad().cpu();
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (const auto& [name, g] : grads[0]) EXPECT_LT(testing::RelativeMaxError(grads[1].at(name), g), 1e-4) << name;
}

// Ten optimizer steps with NCCL at world size 1, bf16 compute, against the same run on CPU.
TEST_F(Cuda, TrainingWithNcclEndsNearTheCpuRun) {
  testing::TempDir tmp;
  const std::string data = tmp / "data.jsonl";
  {
    std::mt19937 gen(4);
    std::ofstream out(data);
    for (int i = 0; i < 16; ++i) {
      nlohmann::json ids = nlohmann::json::array();
      for (int t = 0; t < 24; ++t) ids.push_back(static_cast<int>((i * 7 + t * (i % 3 + 1)) % 96));
      out << nlohmann::json{{"input_ids", ids}, {"lang", i % 2 ? "es" : "de"}}.dump() << "\n";
    }
  }
  double final_loss[2] = {0, 0};
  for (int d = 0; d < 2; ++d) {
    TrainConfig cfg;
    cfg.model.path = kFixtures + "/models/llama_gqa";
    cfg.data.train = spec::DatasetRef::Path(data);
    cfg.data.max_seq_len = 24;
    cfg.training.max_steps = 10;
    cfg.training.micro_batch_size = 4;
    cfg.training.lr = 3e-3;
    cfg.training.device = d == 0 ? "cpu" : "cuda";
    cfg.output_dir = tmp / (d == 0 ? "cpu" : "cuda");
    std::unique_ptr<Communicator> comm;
    if (d == 0) {
      comm = MakeSingleProcessCommunicator();
    } else {
      RendezvousOptions ro;
      ro.master_port = 31000 + static_cast<int>(::getpid() % 2000);
      ro.cuda = true;
      auto c = ConnectProcessGroup(ro);
      ASSERT_TRUE(c.ok()) << c.status();
      comm = std::move(*c);
    }
    TrainRunOptions opts;
    opts.progress = false;
    auto summary = RunTraining(cfg, *comm, opts);
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_EQ(summary->steps, 10);
    final_loss[d] = summary->final_loss;
  }
  ASSERT_TRUE(std::isfinite(final_loss[1]));
  EXPECT_NEAR(final_loss[1], final_loss[0], 2e-2 * final_loss[0])
      << "cpu " << final_loss[0] << " cuda " << final_loss[1];
}

}  // namespace
}  // namespace polytune::engine
