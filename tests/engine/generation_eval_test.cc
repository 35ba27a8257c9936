// Prompts from data and evaluation by generation, on a small random model with a real BPE
// tokenizer (learned from the example data): figures recomputed here from the generations
// themselves, labels chosen so the expected accuracy is known, and 2 Gloo ranks equal 1.
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "polytune/engine/generation_eval.h"
#include "polytune/engine/model_io.h"
#include "polytune/engine/model_loader.h"
#include "polytune/text/bpe_trainer.h"
#include "polytune/text/text_metrics.h"
#include "test_util.h"

namespace polytune::engine {
namespace {

struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<text::Tokenizer> tokenizer;
  std::optional<text::ChatTemplate> chat;
};

Fixture& Shared() {
  static Fixture* f = [] {
    auto* f = new Fixture;
    text::BpeTrainOptions bo;
    bo.vocab_size = 400;
    auto tok = text::TrainTokenizerFromCorpus(std::string(POLYTUNE_EXAMPLES) + "/data/instructions_train.jsonl", bo,
                                              f->dir.path());
    EXPECT_TRUE(tok.ok()) << tok.status();
    ModelConfig c;
    c.hidden_size = 32, c.num_hidden_layers = 2, c.num_attention_heads = 4, c.num_key_value_heads = 2;
    c.intermediate_size = 64, c.vocab_size = 400, c.head_dim = 8, c.rms_norm_eps = 1e-5;
    EXPECT_TRUE(WriteRandomModel(f->dir.path(), c, 3).ok());
    LoadOptions lo;
    lo.quantization = Quantization::kNone;
    f->model = std::move(*LoadModel(f->dir.path(), lo));
    f->tokenizer = std::move(*tok);
    f->chat = *text::ChatTemplate::Builtin("chatml");
    return f;
  }();
  return *f;
}

std::string WriteLines(const testing::TempDir& dir, const std::vector<std::string>& lines) {
  const std::string path = dir / "data.jsonl";
  std::ofstream out(path);
  for (const auto& l : lines) out << l << "\n";
  return path;
}

TEST(GenerationEval, PromptsStopBeforeTheLastAssistantTurnWhichIsTheReference) {
  Fixture& f = Shared();
  testing::TempDir tmp;
  const std::string path = WriteLines(
      tmp, {R"({"lang": "es", "messages": [{"role": "system", "content": "Eres médico."}, )"
            R"({"role": "user", "content": "¿Dosis?"}, {"role": "assistant", "content": "4 g al día."}]})",
            R"({"instruction": "Traduce", "input": "hello", "output": "hola", "lang": "es", "label": "greeting"})",
            R"({"messages": [{"role": "user", "content": "Hi"}]})", R"({"text": "Once upon", "label": 1})"});
  auto cases = LoadPromptCases(path, text::DataFormat::kAuto, *f.tokenizer, &*f.chat);
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_EQ(cases->size(), 4u);
  const auto& c0 = (*cases)[0];
  EXPECT_EQ(c0.reference, "4 g al día.");
  EXPECT_EQ(c0.lang, "es");
  auto expected = f.chat->Render({{"system", "Eres médico."}, {"user", "¿Dosis?"}}, true, "", "");
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(c0.prompt, *expected);
  EXPECT_EQ(c0.prompt_ids, f.tokenizer->Encode(*expected));
  EXPECT_EQ(c0.prompt.find("4 g"), std::string::npos);
  EXPECT_EQ((*cases)[1].reference, "hola");
  EXPECT_EQ((*cases)[1].label, "greeting");
  EXPECT_FALSE((*cases)[2].reference.has_value());  // nothing to score against
  EXPECT_EQ((*cases)[2].lang, "und");
  EXPECT_EQ((*cases)[3].prompt, "Once upon");
  EXPECT_EQ((*cases)[3].label, "1");

  const std::string bad = WriteLines(tmp, {R"({"text": "ok"})", R"({"messages": "nope"})"});
  auto err = LoadPromptCases(bad, text::DataFormat::kAuto, *f.tokenizer, &*f.chat);
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("data.jsonl:2"), std::string::npos) << err.status();
  EXPECT_NE(err.status().message().find("messages"), std::string::npos) << err.status();
}

std::vector<PromptCase> EvalCases(Fixture& f, const std::vector<Generation>* outputs = nullptr) {
  const char* langs[] = {"es", "de", "id"};
  const char* refs[] = {"El paciente está estable.", "Der Umsatz stieg.", "Gugatan ditolak.", "Sí", "Nein", "Ya"};
  std::vector<PromptCase> cases;
  for (int i = 0; i < 12; ++i) {
    auto c = MakeUserPrompt("Pregunta número " + std::to_string(i), *f.tokenizer, &*f.chat);
    EXPECT_TRUE(c.ok());
    c->lang = langs[i % 3];
    c->reference = refs[i % 6];
    // Labels: examples 0..5 get their own (greedy) output as label, so they are right; 6..11
    // get a label no output equals.
    if (outputs) c->label = i < 6 ? (*outputs)[i].text : (i % 2 ? "yes" : "no");
    cases.push_back(std::move(*c));
  }
  return cases;
}

TEST(GenerationEval, FiguresEqualScoresOfTheGenerationsThemselves) {
  Fixture& f = Shared();
  GenerationEvalOptions o;
  o.generation.max_new_tokens = 8;
  o.batch_size = 5;  // batches cut across languages and lengths
  auto first = GenerateForCases(*f.model, EvalCases(f), o.generation, 1, *f.tokenizer);
  ASSERT_TRUE(first.ok());
  auto cases = EvalCases(f, &*first);
  auto comm = MakeSingleProcessCommunicator();
  auto r = EvaluateGeneration(*f.model, cases, o, *f.tokenizer, *comm);
  ASSERT_TRUE(r.ok()) << r.status();

  // Batched generation (5 per batch) gave the same text as one prompt at a time.
  text::ChrfStats all, es;
  const text::ChrfOptions chrf;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto s = text::ChrfSegmentStats((*first)[i].text, *cases[i].reference, chrf);
    all.Add(s);
    if (cases[i].lang == "es") es.Add(s);
  }
  EXPECT_EQ(r->overall.examples, 12);
  EXPECT_NEAR(r->overall.chrf, text::ChrfScore(all, chrf), 1e-9);
  EXPECT_NEAR(r->languages.at("es").chrf, text::ChrfScore(es, chrf), 1e-9);
  EXPECT_EQ(r->languages.at("de").examples, 4);
  // Labels: 6 of 12 right; the wrong ones predict labels outside {yes, no, outputs...} or not.
  EXPECT_EQ(r->overall.labelled, 12);
  EXPECT_DOUBLE_EQ(r->overall.label_accuracy, 0.5);
  EXPECT_GE(r->overall.macro_f1, 0.0);
  EXPECT_EQ(r->samples.size(), 9u);  // 3 per language
}

TEST(GenerationEval, TwoRanksGiveTheSameFiguresAsOne) {
  Fixture& f = Shared();
  GenerationEvalOptions o;
  o.generation.max_new_tokens = 6;
  auto first = GenerateForCases(*f.model, EvalCases(f), o.generation, 4, *f.tokenizer);
  ASSERT_TRUE(first.ok());
  auto cases = EvalCases(f, &*first);
  auto single = MakeSingleProcessCommunicator();
  auto one = EvaluateGeneration(*f.model, cases, o, *f.tokenizer, *single);
  ASSERT_TRUE(one.ok());
  std::vector<absl::StatusOr<GenerationEvalResult>> results(2, absl::UnknownError("not run"));
  const int port = 29000 + static_cast<int>(::getpid() % 2000);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank)
    threads.emplace_back([&, rank] {
      RendezvousOptions ro;
      ro.master_port = port;
      ro.rank = rank;
      ro.world_size = 2;
      auto comm = ConnectProcessGroup(ro);
      if (!comm.ok()) {
        results[rank] = comm.status();
        return;
      }
      results[rank] = EvaluateGeneration(*f.model, cases, o, *f.tokenizer, **comm);
    });
  for (auto& t : threads) t.join();
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(results[rank].ok()) << results[rank].status();
    const auto& r = *results[rank];
    EXPECT_NEAR(r.overall.chrf, one->overall.chrf, 1e-9);
    EXPECT_NEAR(r.overall.chrfpp, one->overall.chrfpp, 1e-9);
    EXPECT_DOUBLE_EQ(r.overall.label_accuracy, one->overall.label_accuracy);
    EXPECT_DOUBLE_EQ(r.overall.macro_f1, one->overall.macro_f1);
    EXPECT_EQ(r.overall.generated_tokens, one->overall.generated_tokens);
    for (const auto& [lang, fig] : one->languages) EXPECT_NEAR(r.languages.at(lang).chrf, fig.chrf, 1e-9) << lang;
  }
}

TEST(GenerationEval, EosIdsComeFromConfigTokenizerAndGenerationConfig) {
  Fixture& f = Shared();
  testing::TempDir tmp;
  std::ofstream(tmp / "generation_config.json") << R"({"eos_token_id": [7, 9], "do_sample": false})";
  ModelConfig c = f.model->config();
  c.eos_token_id = 3;
  auto ids = EosTokenIds(tmp.path(), c, f.tokenizer.get());
  std::vector<int64_t> want = {3, 7, 9};
  if (f.tokenizer->eos_id()) want.push_back(*f.tokenizer->eos_id());
  std::sort(want.begin(), want.end());
  want.erase(std::unique(want.begin(), want.end()), want.end());
  EXPECT_EQ(ids, want);
}

}  // namespace
}  // namespace polytune::engine
