// training.eval_generate / training.early_stopping: parsing, and the stopping and `best`
// decisions on hand-made evaluation sequences.
#include "polytune/spec/early_stopping.h"

#include <gtest/gtest.h>

namespace polytune::spec {
namespace {

std::string Spec(const std::string& training) {
  return "model: {path: /m}\ndata: {train: /d/t.jsonl, eval: /d/e.jsonl}\ntraining: {" + training +
         "}\nresources: {world_size: 1}\n";
}

std::string ErrorOf(const std::string& training) {
  auto s = ParseJobSpec(Spec(training), "job.yaml", "", SpecUse::kSubmission);
  return s.ok() ? std::string("(accepted)") : std::string(s.status().message());
}

TEST(EarlyStoppingSpec, ParsesDefaultsAndRoundTrips) {
  auto s = ParseJobSpec(Spec("eval_every: 5, eval_generate: {every: 10, examples: 8}, "
                             "early_stopping: {metric: chrf, patience: 2}"),
                        "job.yaml", "", SpecUse::kSubmission);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->training.eval_generate && s->training.early_stopping);
  EXPECT_EQ(s->training.eval_generate->max_new_tokens, 64);
  EXPECT_EQ(s->training.early_stopping->mode, StopMode::kMax);  // chrF rises as the model improves
  auto again = ParseJobSpec(ToCanonicalYaml(*s), "canonical", "", SpecUse::kSubmission);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ToCanonicalYaml(*again), ToCanonicalYaml(*s));
  auto loss = ParseJobSpec(Spec("eval_every: 5, early_stopping: {}"), "job.yaml", "", SpecUse::kSubmission);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_EQ(loss->training.early_stopping->metric, "eval_loss");
  EXPECT_EQ(loss->training.early_stopping->mode, StopMode::kMin);
}

TEST(EarlyStoppingSpec, RefusalsNameTheKeyAndSayWhatToDo) {
  EXPECT_NE(ErrorOf("eval_every: 5, early_stopping: {metric: bleu}").find("'training.early_stopping.metric'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("early_stopping: {patience: 2}").find("needs training.eval_every > 0"), std::string::npos);
  EXPECT_NE(ErrorOf("eval_every: 5, early_stopping: {metric: chrf}").find("set training.eval_generate"),
            std::string::npos);
  EXPECT_NE(ErrorOf("eval_every: 5, eval_generate: {every: 7}").find("must be a multiple of training.eval_every"),
            std::string::npos);
  EXPECT_NE(ErrorOf("eval_every: 5, eval_generate: {evry: 5}").find("'training.eval_generate.evry' is not a known key"),
            std::string::npos);
  EXPECT_NE(ErrorOf("eval_every: 5, early_stopping: {patience: 0}").find("must be at least 1"), std::string::npos);
  EXPECT_NE(ErrorOf("eval_every: 5, early_stopping: {mode: up}").find("must be min or max"), std::string::npos);
  auto no_eval = ParseJobSpec(
      "model: {path: /m}\ndata: {train: /d/t.jsonl}\ntraining: {eval_every: 2, "
      "early_stopping: {}}\nresources: {world_size: 1}\n",
      "job.yaml", "", SpecUse::kSubmission);
  ASSERT_FALSE(no_eval.ok());
  EXPECT_NE(no_eval.status().message().find("needs data.eval"), std::string::npos);
}

EvalFigures Loss(double loss) {
  EvalFigures f;
  f.loss = loss;
  return f;
}

TEST(EarlyStoppingTracker, StopsAfterPatienceEvaluationsWithoutImprovement) {
  EarlyStopping c;
  c.patience = 2;
  c.min_delta = 0.01;
  EarlyStoppingTracker t(c);
  EXPECT_FALSE(t.Observe(0, Loss(0.1)));  // the untrained model is never a candidate
  EXPECT_TRUE(t.Observe(2, Loss(3.0)));
  EXPECT_TRUE(t.Observe(4, Loss(2.5)));
  EXPECT_FALSE(t.Observe(6, Loss(2.495)));  // better, but not by more than min_delta
  EXPECT_FALSE(t.ShouldStop());
  EXPECT_TRUE(t.Observe(8, Loss(2.4)));  // resets the count
  EXPECT_FALSE(t.Observe(10, Loss(2.6)));
  EXPECT_FALSE(t.ShouldStop());
  // State survives a checkpoint round trip: the resumed run stops where this one does.
  EarlyStoppingTracker resumed(c);
  resumed.RestoreFrom(t.ToJson());
  EXPECT_FALSE(t.Observe(12, Loss(2.7)));
  EXPECT_FALSE(resumed.Observe(12, Loss(2.7)));
  EXPECT_TRUE(t.ShouldStop());
  EXPECT_TRUE(resumed.ShouldStop());
  EXPECT_EQ(t.best_step(), 8);
  EXPECT_EQ(resumed.best_step(), 8);
}

TEST(EarlyStoppingTracker, MaxModeAndGenerationMetricsSkipEvaluationsWithoutThem) {
  EarlyStopping c;
  c.metric = "chrf";
  c.mode = StopMode::kMax;
  c.patience = 1;
  EarlyStoppingTracker t(c);
  EvalFigures g;
  g.generated = 4;
  g.chrf = 20;
  EXPECT_TRUE(t.Observe(5, g));
  EXPECT_FALSE(t.Observe(10, Loss(1.0)));  // no generation at this evaluation: not counted
  EXPECT_FALSE(t.ShouldStop());
  g.chrf = 19;
  EXPECT_FALSE(t.Observe(15, g));
  EXPECT_TRUE(t.ShouldStop());
}

TEST(BestCheckpointStep, PicksTheBestEvaluationThatHasACheckpoint) {
  EarlyStopping c;  // lowest eval loss
  std::vector<EvalMetrics> evals;
  for (auto [step, loss] : std::vector<std::pair<int64_t, double>>{{0, 0.5}, {2, 3}, {4, 2}, {6, 1.5}, {8, 1.7}}) {
    EvalMetrics e;
    e.step = step;
    e.overall = Loss(loss);
    evals.push_back(e);
  }
  EXPECT_EQ(BestCheckpointStep(c, evals, {2, 4, 6, 8}), 6);
  EXPECT_EQ(BestCheckpointStep(c, evals, {2, 4, 8}), 8);  // step 6 has no checkpoint: 1.7 beats 2
  EXPECT_EQ(BestCheckpointStep(c, evals, {2, 4}), 4);
  EXPECT_EQ(BestCheckpointStep(c, evals, {}), std::nullopt);
  c.metric = "eval_accuracy";
  c.mode = StopMode::kMax;
  evals[3].overall.accuracy = 0.9;
  EXPECT_EQ(BestCheckpointStep(c, evals, {2, 4, 6, 8}), 6);
}

}  // namespace
}  // namespace polytune::spec
