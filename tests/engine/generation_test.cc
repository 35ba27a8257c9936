// KV-cache generation. Reference: tests/reference/make_generation_fixtures.py decodes greedily
// with no cache (the whole sequence rerun in float64 at every step) on each fixture model,
// dense and NF4, with and without a LoRA adapter. Its per-step margins between the best and
// second-best logit are all >= 2e-5, above the engine's fp32 error on these models (the
// parity tests bound it at 1e-4 relative of logits of magnitude ~0.05, i.e. ~5e-6), so the
// token ids must match exactly.
#include <gtest/gtest.h>

#include <map>

#include "polytune/common/json_util.h"
#include "polytune/engine/adapter_io.h"
#include "polytune/engine/generation.h"
#include "polytune/engine/model_loader.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

const std::string kFixtures = POLYTUNE_FIXTURES;

std::unique_ptr<LlamaModel> Load(const std::string& name, bool nf4, bool adapter) {
  LoadOptions opts;
  opts.quantization = nf4 ? Quantization::kNf4 : Quantization::kNone;
  opts.double_quant = true;
  auto model = LoadModel(kFixtures + "/models/" + name, opts);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return nullptr;
  if (adapter) {
    auto a = LoadPeftAdapter(kFixtures + "/adapters/" + name);
    EXPECT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(ApplyPeftAdapter(*a, model->get()).ok());
  }
  return std::move(*model);
}

std::vector<int64_t> Ids(const nlohmann::json& j) { return j.get<std::vector<int64_t>>(); }

struct Case {
  std::string model;
  bool nf4, adapter;
  std::vector<std::vector<int64_t>> prompts, expected;
};

std::vector<Case> ReferenceCases() {
  auto ref = ReadJsonFile(kFixtures + "/generation.reference.json");
  EXPECT_TRUE(ref.ok()) << ref.status();
  std::vector<Case> cases;
  if (!ref.ok()) return cases;
  for (const auto& c : ref->at("cases")) {
    Case k{c.at("model").get<std::string>(),
           c.at("quantization").get<std::string>() == "nf4",
           c.at("adapter").get<bool>(),
           {},
           {}};
    for (const auto& o : c.at("outputs")) {
      k.prompts.push_back(Ids(o.at("prompt")));
      k.expected.push_back(Ids(o.at("tokens")));
    }
    cases.push_back(std::move(k));
  }
  return cases;
}

TEST(Generation, GreedyMatchesTheUncachedReferenceOnEveryArchitecture) {
  auto cases = ReferenceCases();
  ASSERT_EQ(cases.size(), 16u);  // 4 models x {dense, nf4} x {base, adapter}
  for (const auto& c : cases) {
    SCOPED_TRACE(c.model + (c.nf4 ? " nf4" : " dense") + (c.adapter ? " +adapter" : ""));
    auto model = Load(c.model, c.nf4, c.adapter);
    ASSERT_NE(model, nullptr);
    GenerationOptions opts;
    opts.max_new_tokens = static_cast<int64_t>(c.expected[0].size());
    // All prompts in one left-padded batch, then each alone: the same tokens either way.
    auto batched = Generate(*model, c.prompts, opts);
    ASSERT_TRUE(batched.ok()) << batched.status();
    for (size_t i = 0; i < c.prompts.size(); ++i) {
      EXPECT_EQ((*batched)[i].tokens, c.expected[i]) << "prompt " << i << " in a batch";
      EXPECT_EQ((*batched)[i].finish, FinishReason::kLength);
      auto alone = Generate(*model, {c.prompts[i]}, opts);
      ASSERT_TRUE(alone.ok());
      EXPECT_EQ((*alone)[0].tokens, c.expected[i]) << "prompt " << i << " alone";
    }
  }
}

// The cache path against the model's own full forward: at every step, the generated token is
// the argmax of a full (uncached) forward over prompt + tokens so far, and the cached logits
// equal the full ones.
TEST(Generation, KvCacheDecodingEqualsFullRecomputation) {
  at::NoGradGuard no_grad;
  for (const auto& c : ReferenceCases()) {
    SCOPED_TRACE(c.model + (c.nf4 ? " nf4" : " dense") + (c.adapter ? " +adapter" : ""));
    auto model = Load(c.model, c.nf4, c.adapter);
    ASSERT_NE(model, nullptr);
    const auto& prompt = c.prompts[0];
    const int64_t steps = 10;
    KvCache cache = model->NewKvCache(1, static_cast<int64_t>(prompt.size()) + steps);
    const int64_t n = static_cast<int64_t>(prompt.size());
    at::Tensor hidden =
        model->ForwardCached(at::tensor(prompt, at::kLong).view({1, n}), at::arange(n, at::kLong).view({1, n}), &cache);
    std::vector<int64_t> seq = prompt;
    for (int64_t s = 0; s < steps; ++s) {
      at::Tensor cached = model->Logits(hidden.select(1, hidden.size(1) - 1))[0];
      at::Tensor full = model->Forward(at::tensor(seq, at::kLong).view({1, -1}))[0][-1];
      EXPECT_LT(testing::RelativeMaxError(cached, full), 1e-5) << "step " << s;
      const int64_t next = full.argmax().item<int64_t>();
      EXPECT_EQ(cached.argmax().item<int64_t>(), next) << "step " << s;
      seq.push_back(next);
      hidden = model->ForwardCached(at::tensor(std::vector<int64_t>{next}, at::kLong).view({1, 1}),
                                    at::full({1, 1}, static_cast<int64_t>(seq.size()) - 1, at::kLong), &cache);
    }
    EXPECT_EQ(cache.length, n + steps);
  }
}

TEST(Generation, CacheBytesPerTokenCountsKeysAndValuesOfEveryLayer) {
  auto model = Load("llama_gqa", false, false);
  ASSERT_NE(model, nullptr);
  KvCache cache = model->NewKvCache(3, 20);
  const auto& cfg = model->config();
  EXPECT_EQ(cache.BytesPerToken(), cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim * 4);
}

TEST(Generation, StopsOnEosAndOnStopStringsAndReportsWhy) {
  auto model = Load("llama_gqa", false, false);
  ASSERT_NE(model, nullptr);
  const std::vector<int64_t> prompt = {5, 17, 33, 2, 71, 9, 40};
  GenerationOptions opts;
  opts.max_new_tokens = 12;
  auto full = Generate(*model, {prompt}, opts);
  ASSERT_TRUE(full.ok());
  const std::vector<int64_t> tokens = (*full)[0].tokens;
  ASSERT_EQ(tokens.size(), 12u);
  // EOS: the third generated token ends it and is not part of the output.
  opts.eos_ids = {tokens[2]};
  auto eos = Generate(*model, {prompt}, opts);
  ASSERT_TRUE(eos.ok());
  const size_t first = std::find(tokens.begin(), tokens.end(), tokens[2]) - tokens.begin();
  EXPECT_EQ((*eos)[0].tokens, std::vector<int64_t>(tokens.begin(), tokens.begin() + first));
  EXPECT_EQ((*eos)[0].finish, FinishReason::kEos);
  // Stop string: ids decode to "<id>," so the text of the 4th token is a stop string.
  TokenDecoder decode = [](const std::vector<int64_t>& ids) {
    std::string s;
    for (int64_t id : ids) s += "t" + std::to_string(id) + ",";
    return s;
  };
  opts.eos_ids.clear();
  opts.stop_strings = {"t" + std::to_string(tokens[3]) + ","};
  auto stop = Generate(*model, {prompt}, opts, decode);
  ASSERT_TRUE(stop.ok());
  const auto& g = (*stop)[0];
  EXPECT_EQ(g.finish, FinishReason::kStopString);
  const std::string want = decode(std::vector<int64_t>(tokens.begin(), tokens.begin() + 4));
  EXPECT_EQ(g.text, want.substr(0, want.find(opts.stop_strings[0])));
  EXPECT_LE(g.tokens.size(), 4u);
  // Without a stop: the decoded text of every token.
  opts.stop_strings.clear();
  auto plain = Generate(*model, {prompt}, opts, decode);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)[0].text, decode(tokens));
  EXPECT_EQ((*plain)[0].finish, FinishReason::kLength);
}

TEST(Generation, SamplingIsSeededPerStreamAndIndependentOfTheBatch) {
  auto model = Load("mistral_window", true, true);
  ASSERT_NE(model, nullptr);
  GenerationOptions opts;
  opts.max_new_tokens = 10;
  opts.temperature = 1.5;
  opts.top_p = 0.95;
  opts.seed = 42;
  const std::vector<std::vector<int64_t>> prompts = {{5, 17, 33}, {88, 3, 14, 2, 9}};
  auto a = Generate(*model, prompts, opts, nullptr, {7, 8});
  auto b = Generate(*model, {prompts[1]}, opts, nullptr, {8});
  auto c = Generate(*model, prompts, opts, nullptr, {7, 8});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ((*a)[1].tokens, (*b)[0].tokens);  // same stream id, different batch
  EXPECT_EQ((*a)[0].tokens, (*c)[0].tokens);  // same seed, same output
  opts.seed = 43;
  auto d = Generate(*model, prompts, opts, nullptr, {7, 8});
  ASSERT_TRUE(d.ok());
  EXPECT_NE((*a)[0].tokens, (*d)[0].tokens);  // 10 draws at temperature 1.5 over 96 tokens
}

TEST(Generation, PickTokenFollowsTemperatureTopKAndTopP) {
  // Probabilities at temperature 1: 0.5, 0.25, 0.125, 0.125 (ids 2, 0, 1, 3).
  const float logits[] = {std::log(0.25f), std::log(0.125f), std::log(0.5f), std::log(0.125f)};
  GenerationOptions greedy;
  EXPECT_EQ(PickToken(logits, 4, greedy, 0.99), 2);
  GenerationOptions t1;
  t1.temperature = 1.0;
  // Cumulative in likelihood order (ties by id): 2 -> 0.5, 0 -> 0.75, 1 -> 0.875, 3 -> 1.
  EXPECT_EQ(PickToken(logits, 4, t1, 0.49), 2);
  EXPECT_EQ(PickToken(logits, 4, t1, 0.51), 0);
  EXPECT_EQ(PickToken(logits, 4, t1, 0.80), 1);
  EXPECT_EQ(PickToken(logits, 4, t1, 0.90), 3);
  GenerationOptions k2 = t1;
  k2.top_k = 2;  // renormalised over {2: 2/3, 0: 1/3}
  EXPECT_EQ(PickToken(logits, 4, k2, 0.66), 2);
  EXPECT_EQ(PickToken(logits, 4, k2, 0.67), 0);
  EXPECT_EQ(PickToken(logits, 4, k2, 0.999), 0);
  GenerationOptions p = t1;
  p.top_p = 0.7;  // smallest prefix with mass >= 0.7: {2, 0}
  EXPECT_EQ(PickToken(logits, 4, p, 0.999), 0);
  p.top_p = 0.45;  // {2} alone already has 0.5
  EXPECT_EQ(PickToken(logits, 4, p, 0.999), 2);
  GenerationOptions cold = t1;
  cold.temperature = 0.25;  // p ~ w^4: 2 gets 16/(16+1+2*1/16) = 0.934
  EXPECT_EQ(PickToken(logits, 4, cold, 0.93), 2);
  EXPECT_EQ(PickToken(logits, 4, cold, 0.94), 0);
}

TEST(Generation, RefusesBadOptionsAndPrompts) {
  auto model = Load("llama_gqa", false, false);
  ASSERT_NE(model, nullptr);
  GenerationOptions opts;
  opts.top_p = 0;
  EXPECT_NE(Generate(*model, {{1, 2}}, opts).status().message().find("top_p"), std::string::npos);
  opts = {};
  opts.temperature = -1;
  EXPECT_NE(Generate(*model, {{1, 2}}, opts).status().message().find("temperature"), std::string::npos);
  opts = {};
  EXPECT_NE(Generate(*model, {{1, 2}, {}}, opts).status().message().find("prompt 1 has no tokens"), std::string::npos);
  EXPECT_NE(Generate(*model, {{1, 96}}, opts).status().message().find("outside the vocabulary"), std::string::npos);
}

}  // namespace
}  // namespace polytune::engine
