#include <gtest/gtest.h>

#include "polytune/common/json_util.h"
#include "polytune/engine/adapter_io.h"
#include "polytune/engine/model_io.h"
#include "polytune/engine/model_loader.h"
#include "polytune/engine/safetensors.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

const std::string kModel = std::string(POLYTUNE_FIXTURES) + "/models/llama_gqa";

std::unique_ptr<LlamaModel> LoadFp32(const std::string& dir) {
  LoadOptions o;
  o.quantization = Quantization::kNone;
  auto m = LoadModel(dir, o);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

std::unique_ptr<LlamaModel> ModelWithTrainedAdapter() {
  auto model = LoadFp32(kModel);
  LoraSettings s;
  s.r = 4;
  s.alpha = 8;
  s.layers = {1};
  model->AttachLora(s, 7);
  at::NoGradGuard ng;
  for (auto& [n, p] : model->LoraParameters())
    if (n.find("lora_B") != std::string::npos) p.normal_(0, 0.05);
  return model;
}

TEST(PeftAdapter, WritesPeftLayoutAndLoadsBack) {
  testing::TempDir dir;
  auto model = ModelWithTrainedAdapter();
  ASSERT_TRUE(SavePeftAdapter(*model, "base/model", dir / "adapter").ok());
  auto cfg = *ReadJsonFile(dir / "adapter/adapter_config.json");
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 8.0);
  EXPECT_EQ(cfg["layers_to_transform"], nlohmann::json({1}));
  EXPECT_EQ(cfg["base_model_name_or_path"], "base/model");
  EXPECT_EQ(cfg["use_rslora"], false);
  auto f = *SafetensorsFile::Open(dir / "adapter/adapter_model.safetensors");
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const auto& e = f->entries().at("base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight");
  EXPECT_EQ(e.shape, (std::vector<int64_t>{4, 64}));
  EXPECT_EQ(f->entries().at("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight").shape,
            (std::vector<int64_t>{32, 4}));
  EXPECT_EQ(f->entries().size(), 14u);

  auto adapter = LoadPeftAdapter(dir / "adapter");
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  auto fresh = LoadFp32(kModel);
  ASSERT_TRUE(ApplyPeftAdapter(*adapter, fresh.get()).ok());
  at::Tensor ids = at::randint(0, 96, {2, 9}, at::kLong);
  at::NoGradGuard ng;
  EXPECT_TRUE(fresh->Forward(ids).equal(model->Forward(ids)));
}

TEST(Export, MergedCheckpointReproducesAdapterLogits) {
  testing::TempDir dir;
  auto model = ModelWithTrainedAdapter();
  ASSERT_TRUE(SavePeftAdapter(*model, kModel, dir / "adapter").ok());
  ASSERT_TRUE(ExportMergedModel(kModel, dir / "adapter", dir / "merged").ok());
  auto merged = LoadFp32(dir / "merged");
  at::Tensor ids = at::randint(0, 96, {2, 11}, at::kLong);
  at::NoGradGuard ng;
  at::Tensor with_adapter = model->Forward(ids);
  at::Tensor base = LoadFp32(kModel)->Forward(ids);
  EXPECT_GT(testing::RelativeMaxError(with_adapter, base), 1e-3) << "adapter should change the logits";
  EXPECT_LT(testing::RelativeMaxError(merged->Forward(ids), with_adapter), 1e-5);
}

TEST(PeftAdapter, ShapeMismatchIsNamed) {
  testing::TempDir dir;
  auto model = ModelWithTrainedAdapter();
  ASSERT_TRUE(SavePeftAdapter(*model, kModel, dir / "adapter").ok());
  auto adapter = *LoadPeftAdapter(dir / "adapter");
  adapter.tensors["base_model.model.model.layers.1.mlp.up_proj.lora_A.weight"] = at::zeros({4, 63});
  auto fresh = LoadFp32(kModel);
  absl::Status st = ApplyPeftAdapter(adapter, fresh.get());
  EXPECT_NE(st.message().find("layers.1.mlp.up_proj.lora_A.weight"), std::string::npos) << st;
}

}  // namespace
}  // namespace polytune::engine
