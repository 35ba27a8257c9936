// Logits and loss of fixed checkpoints against tests/reference/make_fixtures.py, an
// independent PyTorch implementation of Hugging Face's forward pass. Tolerance: 1e-4
// relative (max |ours - ref| / max |ref|) in fp32.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"
#include "polytune/common/file_util.h"
#include "polytune/common/json_util.h"
#include "polytune/engine/loss.h"
#include "polytune/engine/model_loader.h"
#include "polytune/engine/safetensors.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

namespace fs = std::filesystem;
const std::string kFixtures = POLYTUNE_FIXTURES;

struct ParityCase {
  std::string model;
  std::string mode;  // none, nf4, nf4_dq
};

void PrintTo(const ParityCase& c, std::ostream* os) { *os << c.model << "/" << c.mode; }

class ModelParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(ModelParity, LogitsAndLossMatchReference) {
  const ParityCase& c = GetParam();
  LoadOptions opts;
  opts.quantization = c.mode == "none" ? Quantization::kNone : Quantization::kNf4;
  opts.double_quant = c.mode == "nf4_dq";
  auto model = LoadModel(kFixtures + "/models/" + c.model, opts);
  ASSERT_TRUE(model.ok()) << model.status();
  auto ref = SafetensorsFile::Open(kFixtures + "/" + c.model + ".reference.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status();
  at::Tensor ids = *(*ref)->Load("input_ids");
  at::Tensor labels = *(*ref)->Load("labels");
  at::Tensor expected = *(*ref)->Load("logits_" + c.mode);
  at::NoGradGuard no_grad;
  at::Tensor logits = (*model)->Forward(ids);
  ASSERT_EQ(logits.sizes(), expected.sizes());
  EXPECT_LT(testing::RelativeMaxError(logits, expected), 1e-4) << c.model << " " << c.mode;

  auto losses = ReadJsonFile(kFixtures + "/" + c.model + ".reference.json");
  ASSERT_TRUE(losses.ok());
  const double ref_loss = (*losses)["loss"][c.mode].get<double>();
  const int64_t targets = labels.slice(1, 1).ne(-100).sum().item<int64_t>();
  const double loss = SumTokenCrossEntropy(logits, labels).item<double>() / targets;
  EXPECT_NEAR(loss, ref_loss, 1e-4 * std::abs(ref_loss));
}

std::vector<ParityCase> AllCases() {
  std::vector<ParityCase> out;
  for (const char* m : {"llama_gqa", "qwen2_tied_f16", "llama3_sharded_bf16", "mistral_window"})
    for (const char* mode : {"none", "nf4", "nf4_dq"}) out.push_back({m, mode});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelParity, ::testing::ValuesIn(AllCases()),
                         [](const auto& info) { return info.param.model + "_" + info.param.mode; });

TEST(ModelLoaderErrors, QuantisedWeightsTakeAboutAQuarterOfTheMemory) {
  LoadOptions nf4;
  auto q = LoadModel(kFixtures + "/models/llama_gqa", nf4);
  ASSERT_TRUE(q.ok());
  const double bits = 8.0 * (*q)->QuantizedBytes() / (*q)->QuantizedParameterCount();
  EXPECT_LT(bits, 4.6);
  EXPECT_GT(bits, 4.0);
}

// Copies a fixture model so a test can damage it.
std::string CopyModel(const testing::TempDir& dir, const std::string& name) {
  const std::string dst = dir / name;
  fs::copy(kFixtures + "/models/" + name, dst, fs::copy_options::recursive);
  return dst;
}

void EditConfig(const std::string& model_dir, const std::function<void(nlohmann::json&)>& edit) {
  auto j = *ReadJsonFile(model_dir + "/config.json");
  edit(j);
  ASSERT_TRUE(WriteFileAtomic(model_dir + "/config.json", j.dump()).ok());
}

std::string LoadError(const std::string& dir) {
  auto m = LoadModel(dir, LoadOptions{});
  return m.ok() ? std::string("(loaded)") : std::string(m.status().message());
}

TEST(ModelLoaderErrors, WrongShapeNamesFileTensorAndShapes) {
  testing::TempDir dir;
  const std::string m = CopyModel(dir, "llama_gqa");
  EditConfig(m, [](nlohmann::json& j) { j["intermediate_size"] = 128; });
  const std::string err = LoadError(m);
  EXPECT_NE(err.find("model.safetensors"), std::string::npos) << err;
  EXPECT_NE(err.find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("[160, 64]"), std::string::npos) << err;
}

TEST(ModelLoaderErrors, MissingAndExtraTensors) {
  testing::TempDir dir;
  const std::string m = CopyModel(dir, "llama_gqa");
  EditConfig(m, [](nlohmann::json& j) { j["num_hidden_layers"] = 3; });
  EXPECT_NE(LoadError(m).find("model.layers.2.input_layernorm.weight"), std::string::npos) << LoadError(m);
  EditConfig(m, [](nlohmann::json& j) { j["num_hidden_layers"] = 1; });
  const std::string err = LoadError(m);
  EXPECT_NE(err.find("unexpected tensor 'model.layers.1."), std::string::npos) << err;
}

TEST(ModelLoaderErrors, UnsupportedArchitectureAndTruncatedShard) {
  testing::TempDir dir;
  const std::string m = CopyModel(dir, "llama_gqa");
  EditConfig(m, [](nlohmann::json& j) { j["architectures"] = {"GPT2LMHeadModel"}; });
  EXPECT_NE(LoadError(m).find("unsupported architecture 'GPT2LMHeadModel'"), std::string::npos) << LoadError(m);

  const std::string s = CopyModel(dir, "llama3_sharded_bf16");
  const std::string shard = s + "/model-00002-of-00002.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 10);
  const std::string err = LoadError(s);
  EXPECT_NE(err.find("model-00002-of-00002.safetensors"), std::string::npos) << err;
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
}

TEST(ModelLoaderErrors, ShardIndexListingAMissingTensor) {
  testing::TempDir dir;
  const std::string s = CopyModel(dir, "llama3_sharded_bf16");
  auto index = *ReadJsonFile(s + "/model.safetensors.index.json");
  index["weight_map"]["model.layers.9.extra.weight"] = "model-00001-of-00002.safetensors";
  ASSERT_TRUE(WriteFileAtomic(s + "/model.safetensors.index.json", index.dump()).ok());
  const std::string err = LoadError(s);
  EXPECT_NE(err.find("model.layers.9.extra.weight"), std::string::npos) << err;
}

}  // namespace
}  // namespace polytune::engine
