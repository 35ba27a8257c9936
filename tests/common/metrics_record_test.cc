#include "polytune/common/metrics_record.h"

#include <gtest/gtest.h>

#include "polytune/rpc/metrics_convert.h"

namespace polytune {
namespace {

MetricsRecord Step() {
  StepMetrics s;
  s.step = 6;
  s.total_steps = 10;
  s.epoch = 0.75;
  s.loss = 2.3456789012345;
  s.lr = 1e-4;
  s.grad_norm = 0.5;
  s.tokens = 1000;
  s.target_tokens = 400;
  s.tokens_per_second = 1234.5;
  s.elapsed_seconds = 3.25;
  return {s};
}

MetricsRecord Eval() {
  EvalMetrics e;
  e.step = 6;
  e.epoch = 0.75;
  e.overall = {1.5, 4.48, 0.4, 300};
  e.languages["hi"] = {1.7, 5.47, 0.3, 100};
  e.languages["es"] = {1.4, 4.05, 0.45, 200};
  // Evaluation by generation on the Spanish examples only.
  EvalFigures& es = e.languages["es"];
  es.generated = 12;
  es.chrf = 41.25;
  es.chrfpp = 38.5;
  es.exact_match = 0.25;
  es.labelled = 4;
  es.label_accuracy = 0.75;
  es.macro_f1 = 0.6;
  return {e};
}

MetricsRecord StepByLanguage() {
  MetricsRecord r = Step();
  auto& s = std::get<StepMetrics>(r.value);
  s.target_tokens_by_language = {{"es", 250}, {"id", 150}};
  return r;
}

MetricsRecord DataPrep() {
  DataPrepSummary d;
  d.key = "ab12";
  d.cached = true;
  d.seconds = 0.5;
  d.languages["es"] = {10, 7, {{"duplicate", 2}, {"quality:min_units", 1}}, {{"phone", 3}}};
  d.languages["und"] = {1, 0, {{"malformed", 1}}, {}};
  return {d};
}

TEST(MetricsRecord, DataPrepAndPerLanguageTargetsRoundTrip) {
  for (const MetricsRecord& r : {StepByLanguage(), DataPrep()}) {
    const std::string line = MetricsRecordToJson(r);
    auto back = MetricsRecordFromJson(line);
    ASSERT_TRUE(back.ok()) << back.status() << " " << line;
    EXPECT_EQ(MetricsRecordToJson(*back), line);
    auto proto = rpc::FromProto(rpc::ToProto(r));
    ASSERT_TRUE(proto.ok()) << proto.status();
    EXPECT_EQ(MetricsRecordToJson(*proto), line);
  }
  const MetricsRecord d = *MetricsRecordFromJson(MetricsRecordToJson(DataPrep()));
  EXPECT_TRUE(d.is_data_prep());
  EXPECT_EQ(d.kind(), 2);
  EXPECT_EQ(d.step(), 0);
  const auto& es = std::get<DataPrepSummary>(d.value).languages.at("es");
  EXPECT_EQ(es.dropped.at("quality:min_units"), 1);
  EXPECT_EQ(es.pii_replaced.at("phone"), 3);
  EXPECT_EQ(std::get<StepMetrics>(MetricsRecordFromJson(MetricsRecordToJson(StepByLanguage()))->value)
                .target_tokens_by_language.at("id"),
            150);
  // One language: the line is what it was before per-language targets existed.
  MetricsRecord one = Step();
  std::get<StepMetrics>(one.value).target_tokens_by_language = {{"es", 400}};
  EXPECT_FALSE(nlohmann::json::parse(MetricsRecordToJson(one)).contains("target_tokens_by_language"));
  EXPECT_NE(MetricsRecordFromJson(R"({"step":0,"data_prep":{"languages":{"es":{"kept":1}}}})")
                .status()
                .message()
                .find("data_prep.languages.es"),
            std::string::npos);
}

TEST(MetricsRecord, JsonLineRoundTripsBothKinds) {
  for (const MetricsRecord& r : {Step(), Eval()}) {
    const std::string line = MetricsRecordToJson(r);
    auto back = MetricsRecordFromJson(line);
    ASSERT_TRUE(back.ok()) << back.status() << " " << line;
    EXPECT_EQ(MetricsRecordToJson(*back), line);
    EXPECT_EQ(back->is_eval(), r.is_eval());
    EXPECT_EQ(back->step(), 6);
  }
  const auto e = std::get<EvalMetrics>(MetricsRecordFromJson(MetricsRecordToJson(Eval()))->value);
  EXPECT_EQ(e.languages.at("hi").tokens, 100);
  EXPECT_DOUBLE_EQ(e.overall.loss, 1.5);
  EXPECT_EQ(e.languages.at("es").generated, 12);
  EXPECT_DOUBLE_EQ(e.languages.at("es").chrfpp, 38.5);
  EXPECT_DOUBLE_EQ(e.languages.at("es").macro_f1, 0.6);
  EXPECT_FALSE(e.languages.at("hi").has_generation());
}

TEST(MetricsRecord, OnDiskFormatKeepsItsKeys) {
  const auto j = nlohmann::json::parse(MetricsRecordToJson(Step()));
  for (const char* k :
       {"step", "epoch", "loss", "lr", "grad_norm", "tokens", "target_tokens", "tokens_per_second", "elapsed_seconds"})
    EXPECT_TRUE(j.contains(k)) << k;
  const auto e = nlohmann::json::parse(MetricsRecordToJson(Eval()));
  EXPECT_TRUE(e["eval"]["languages"].contains("hi"));
  EXPECT_TRUE(e["eval"]["overall"].contains("ppl"));
  // Generation fields only where generation ran: older readers see the same lines as before.
  EXPECT_FALSE(e["eval"]["overall"].contains("chrf"));
  for (const char* k : {"generated", "chrf", "chrfpp", "exact_match", "labelled", "label_accuracy", "macro_f1"})
    EXPECT_TRUE(e["eval"]["languages"]["es"].contains(k)) << k;
}

TEST(MetricsRecord, OlderStepRecordsWithoutTotalStepsStillRead) {
  auto r = MetricsRecordFromJson(
      R"({"step":1,"epoch":0.1,"loss":2,"lr":0.001,"grad_norm":1,"tokens":5,"target_tokens":3,"tokens_per_second":9,"elapsed_seconds":1})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::get<StepMetrics>(r->value).total_steps, 0);
}

TEST(MetricsRecord, BadLinesNameTheField) {
  EXPECT_NE(MetricsRecordFromJson(R"({"step":1})").status().message().find("'epoch'"), std::string::npos);
  EXPECT_NE(MetricsRecordFromJson(R"({"step":1,"epoch":0,"eval":{"overall":{"loss":1}}})")
                .status()
                .message()
                .find("'eval.overall.ppl'"),
            std::string::npos);
  EXPECT_NE(
      MetricsRecordFromJson(R"({"step":"x","epoch":0,"loss":1})").status().message().find("'step' is not a number"),
      std::string::npos);
  EXPECT_FALSE(MetricsRecordFromJson("{not json").ok());
}

TEST(MetricsRecord, ProtoRoundTrip) {
  for (const MetricsRecord& r : {Step(), Eval()}) {
    auto back = rpc::FromProto(rpc::ToProto(r));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(MetricsRecordToJson(*back), MetricsRecordToJson(r));
  }
  EXPECT_FALSE(rpc::FromProto(v1::MetricsRecord()).ok()) << "an empty record is refused";
}

}  // namespace
}  // namespace polytune
