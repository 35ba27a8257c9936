#include "polytune/engine/model_config.h"

#include <gtest/gtest.h>

namespace polytune::engine {
namespace {

nlohmann::json Base(const std::string& arch) {
  return {{"architectures", {arch}},  {"vocab_size", 100},      {"hidden_size", 64},
          {"intermediate_size", 128}, {"num_hidden_layers", 2}, {"num_attention_heads", 4}};
}

TEST(ModelConfig, DefaultsFollowTransformers) {
  auto c = ParseModelConfig(Base("LlamaForCausalLM"), "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_FALSE(c->rope_scaling.has_value());
  EXPECT_EQ(c->sliding_window, 0);
}

TEST(ModelConfig, Qwen2HasQkvBiasAndMistralItsWindow) {
  auto q = ParseModelConfig(Base("Qwen2ForCausalLM"), "config.json");
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->qkv_bias);
  EXPECT_FALSE(q->o_proj_bias);
  auto m = ParseModelConfig(Base("MistralForCausalLM"), "config.json");
  EXPECT_EQ(m->sliding_window, 4096);
  auto j = Base("MistralForCausalLM");
  j["sliding_window"] = nullptr;
  EXPECT_EQ(ParseModelConfig(j, "config.json")->sliding_window, 0);
}

TEST(ModelConfig, Llama3ScalingFromRopeScalingOrRopeParameters) {
  auto j = Base("LlamaForCausalLM");
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  auto a = ParseModelConfig(j, "config.json");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(a->rope_scaling.has_value());
  EXPECT_EQ(a->rope_scaling->type, RopeScaling::Type::kLlama3);
  auto v5 = Base("LlamaForCausalLM");
  v5["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                           {"factor", 32.0},          {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  auto b = ParseModelConfig(v5, "config.json");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_DOUBLE_EQ(b->rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(b->rope_scaling->factor, 32.0);
}

TEST(ModelConfig, ErrorsNameFileAndField) {
  auto j = Base("LlamaForCausalLM");
  j.erase("hidden_size");
  EXPECT_NE(
      ParseModelConfig(j, "m/config.json").status().message().find("m/config.json: field 'hidden_size' is required"),
      std::string::npos);
  j = Base("LlamaForCausalLM");
  j["num_key_value_heads"] = 3;
  EXPECT_NE(ParseModelConfig(j, "c").status().message().find("num_key_value_heads"), std::string::npos);
  j = Base("LlamaForCausalLM");
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(ParseModelConfig(j, "c").status().message().find("'yarn'"), std::string::npos);
}

TEST(ModelConfig, JsonRoundTrip) {
  auto c = ParseModelConfig(Base("MistralForCausalLM"), "c");
  auto back = ParseModelConfig(ModelConfigToJson(*c), "c");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->architecture, Architecture::kMistral);
  EXPECT_EQ(back->sliding_window, 4096);
  EXPECT_EQ(back->head_dim, 16);
}

}  // namespace
}  // namespace polytune::engine
