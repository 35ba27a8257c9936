#include "polytune/engine/train_config.h"

#include <gtest/gtest.h>

namespace polytune::engine {
namespace {

const char* kFull = R"(
model: {path: models/base, quantization: nf4, double_quant: true}
lora: {r: 16, alpha: 32, dropout: 0.05, rslora: false, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj], layers: all, init_adapter: null}
data: {train: data/train.jsonl, eval: data/eval.jsonl, format: tokens, max_seq_len: 1024}
training: {max_steps: 200, epochs: 1, micro_batch_size: 4, grad_accum_steps: 1, lr: 2.0e-4, lr_schedule: cosine, warmup_steps: 10, weight_decay: 0.0, max_grad_norm: 1.0, seed: 42, gradient_checkpointing: true, eval_every: 50, checkpoint_every: 50}
output_dir: out
)";

TEST(TrainConfig, ParsesTheDocumentedExampleAndResolvesPaths) {
  auto c = ParseTrainConfig(kFull, "job.yaml", "/jobs");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.path, "/jobs/models/base");
  EXPECT_EQ(c->data.train.path(), "/jobs/data/train.jsonl");
  EXPECT_EQ(c->output_dir, "/jobs/out");
  EXPECT_EQ(c->lora.r, 16);
  EXPECT_EQ(c->lora.target_modules.size(), 7u);
  EXPECT_TRUE(c->lora.layers.empty());
  EXPECT_EQ(c->training.max_steps, 200);
  EXPECT_DOUBLE_EQ(c->training.lr, 2e-4);
  EXPECT_EQ(c->training.lr_schedule, LrSchedule::kCosine);
  EXPECT_TRUE(c->init_adapter.empty());
}

std::string ErrorOf(const std::string& yaml) {
  auto c = ParseTrainConfig(yaml, "job.yaml", "/jobs");
  return c.ok() ? std::string("(accepted)") : std::string(c.status().message());
}

TEST(TrainConfig, UnknownKeyIsNamedWithLine) {
  const std::string err =
      ErrorOf("model: {path: m}\ndata: {train: t}\ntraining:\n  lr: 0.1\n  learning_rate: 0.1\noutput_dir: o\n");
  EXPECT_NE(err.find("job.yaml:5"), std::string::npos) << err;
  EXPECT_NE(err.find("'training.learning_rate' is not a known key"), std::string::npos) << err;
  EXPECT_NE(ErrorOf("model: {path: m}\ndata: {train: t}\noutput_dir: o\nresources: {}\n").find("'resources'"),
            std::string::npos);
}

TEST(TrainConfig, BadValuesAreNamed) {
  const std::string base = "model: {path: m}\ndata: {train: t}\noutput_dir: o\n";
  EXPECT_NE(ErrorOf(base + "training: {lr: fast}\n").find("'training.lr' must be a number, got 'fast'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(base + "training: {lr_schedule: step}\n").find("training.lr_schedule"), std::string::npos);
  EXPECT_NE(ErrorOf(base + "training: {micro_batch_size: 0}\n").find("training.micro_batch_size' must be at least 1"),
            std::string::npos);
  EXPECT_NE(ErrorOf(base + "lora: {dropout: 1.5}\n").find("lora.dropout"), std::string::npos);
  EXPECT_NE(ErrorOf(base + "lora: {target_modules: [qkv]}\n").find("unknown module 'qkv'"), std::string::npos);
  EXPECT_NE(ErrorOf(base + "lora: {layers: some}\n").find("lora.layers"), std::string::npos);
  EXPECT_NE(
      ErrorOf("model: {path: m, quantization: int8}\ndata: {train: t}\noutput_dir: o\n").find("model.quantization"),
      std::string::npos);
  EXPECT_NE(ErrorOf("model: {path: m}\noutput_dir: o\n").find("'data' is required"), std::string::npos);
  EXPECT_NE(ErrorOf("model: [").find("invalid YAML"), std::string::npos);
}

TEST(TrainConfig, LayerListParses) {
  auto c = ParseTrainConfig("model: {path: m}\ndata: {train: t}\noutput_dir: o\nlora: {layers: [0, 2]}\n", "j", "/");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->lora.layers, (std::vector<int64_t>{0, 2}));
}

}  // namespace
}  // namespace polytune::engine
