#include "polytune/spec/job_spec.h"

#include <gtest/gtest.h>

#include "polytune/text/chat_template.h"
#include "polytune/text/examples.h"
#include "polytune/v1/polytune.pb.h"

namespace polytune::spec {
namespace {

const char* kSubmitted = R"(
model: {path: /models/base, quantization: none, double_quant: false}
lora: {r: 8, alpha: 16, dropout: 0.1, rslora: true, target_modules: [q_proj, v_proj], layers: [0, 3]}
data:
  train: {sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef, name: notas.jsonl}
  eval: /data/eval.jsonl
  format: messages
  max_seq_len: 512
  chat_template: chatml
  packing: true
training: {max_steps: 7, lr: 0.0003, lr_schedule: linear, warmup_steps: 2, weight_decay: 0.01, seed: 9,
           adam_epsilon: 1.0e-7, device: cpu, num_threads: 2}
resources: {world_size: 3}
)";

std::string ErrorOf(const std::string& yaml, SpecUse use = SpecUse::kSubmission, const std::string& base = "") {
  auto s = ParseJobSpec(yaml, "job.yaml", base, use);
  return s.ok() ? std::string("(accepted)") : std::string(s.status().message());
}

TEST(JobSpec, RoundTripsThroughCanonicalYamlAndTheProto) {
  auto a = ParseJobSpec(kSubmitted, "job.yaml", "", SpecUse::kSubmission);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->data.train.is_artifact());
  EXPECT_EQ(a->data.train.name(), "notas.jsonl");
  EXPECT_EQ(a->data.eval.path(), "/data/eval.jsonl");
  ASSERT_TRUE(a->resources.has_value());
  EXPECT_EQ(a->resources->world_size, 3);
  // type -> proto (what the CLI sends) -> type (what the coordinator and workers read)
  v1::SubmitJobRequest req;
  req.set_spec_yaml(ToCanonicalYaml(*a));
  std::string wire;
  ASSERT_TRUE(req.SerializeToString(&wire));
  v1::SubmitJobRequest received;
  ASSERT_TRUE(received.ParseFromString(wire));
  auto b = ParseJobSpec(received.spec_yaml(), "submitted spec", "", SpecUse::kSubmission);
  ASSERT_TRUE(b.ok()) << b.status() << "\n" << received.spec_yaml();
  EXPECT_EQ(ToCanonicalYaml(*a), ToCanonicalYaml(*b));
  EXPECT_EQ(b->model.quantization, Quantization::kNone);
  EXPECT_FALSE(b->model.double_quant);
  EXPECT_EQ(b->lora.r, 8);
  EXPECT_DOUBLE_EQ(b->lora.alpha, 16);
  EXPECT_TRUE(b->lora.rslora);
  EXPECT_EQ(b->lora.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(b->lora.layers, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(b->data.train, a->data.train);
  EXPECT_EQ(b->data.format, "messages");
  EXPECT_EQ(b->data.chat_template, "chatml");
  EXPECT_TRUE(b->data.packing);
  EXPECT_EQ(b->training.lr, 0.0003) << "doubles survive exactly";
  EXPECT_EQ(b->training.adam_epsilon, 1.0e-7);
  EXPECT_EQ(b->training.lr_schedule, LrSchedule::kLinear);
  EXPECT_EQ(b->training.seed, 9u);
  EXPECT_EQ(b->resources->world_size, 3);
}

TEST(JobSpec, CanonicalYamlOfAWorkerSpecReadsBackForTraining) {
  auto s = ParseJobSpec(kSubmitted, "job.yaml", "", SpecUse::kSubmission);
  ASSERT_TRUE(s.ok()) << s.status();
  s->data.train = DatasetRef::Path("/cache/abc");
  s->output_dir = "/work/out";
  auto t = ParseJobSpec(ToCanonicalYaml(*s), "spec.yaml", "", SpecUse::kTraining);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->data.train.path(), "/cache/abc");
  EXPECT_EQ(t->output_dir, "/work/out");
  EXPECT_EQ(ToCanonicalYaml(*t), ToCanonicalYaml(*s));
}

TEST(JobSpec, LanguageSamplingWeightsAndDataPrepare) {
  const std::string base = "model: {path: /m}\nresources: {world_size: 1}\n";
  auto s = ParseJobSpec(base + R"(data:
  train: /t
  sampling: {strategy: unimax, max_epochs_per_language: 2.5}
  prepare:
    language: {languages: [es, id]}
    dedup: {threshold: 0.9}
training: {language_weights: {es: 2.0, id: 3}}
)",
                        "job.yaml", "", SpecUse::kSubmission);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->data.sampling.strategy, SamplingStrategy::kUnimax);
  EXPECT_EQ(s->data.sampling.max_epochs_per_language, 2.5);
  ASSERT_TRUE(s->data.prepare.has_value());
  EXPECT_EQ(s->data.prepare->language.languages, (std::vector<std::string>{"es", "id"}));
  EXPECT_EQ(s->data.prepare->dedup.threshold, 0.9);
  EXPECT_EQ(s->training.language_weights.mode, LanguageWeights::Mode::kExplicit);
  EXPECT_EQ(s->training.language_weights.weights.at("id"), 3.0);
  auto again = ParseJobSpec(ToCanonicalYaml(*s), "canonical", "", SpecUse::kSubmission);
  ASSERT_TRUE(again.ok()) << again.status() << ToCanonicalYaml(*s);
  EXPECT_EQ(ToCanonicalYaml(*again), ToCanonicalYaml(*s));
  ASSERT_TRUE(again->data.prepare.has_value());
  EXPECT_TRUE(*again->data.prepare == *s->data.prepare);
  // The sampling and the prep config decide what a run computes; the weights too.
  const auto keys = RunDefiningKeys(*s);
  EXPECT_EQ(keys.at("data.sampling.strategy"), "unimax");
  EXPECT_EQ(keys.at("data.prepare.dedup.threshold"), "0.90000000000000002");
  EXPECT_EQ(keys.at("training.language_weights.es"), "2");
  auto inverse = ParseJobSpec(base + "data: {train: /t}\ntraining: {language_weights: inverse_frequency}\n", "job.yaml",
                              "", SpecUse::kSubmission);
  ASSERT_TRUE(inverse.ok()) << inverse.status();
  EXPECT_EQ(inverse->training.language_weights.mode, LanguageWeights::Mode::kInverseFrequency);
  EXPECT_FALSE(inverse->data.prepare.has_value());
  EXPECT_EQ(inverse->data.sampling.strategy, SamplingStrategy::kNatural);

  const std::string d = base + "data:\n  train: /t\n";
  EXPECT_NE(ErrorOf(d + "  sampling: {strategy: balanced}\n").find("'data.sampling.strategy' must be natural"),
            std::string::npos);
  EXPECT_NE(ErrorOf(d + "  sampling: {strategy: temperature, alpha: 0}\n").find("'data.sampling.alpha' must be in"),
            std::string::npos);
  EXPECT_NE(ErrorOf(d + "  prepare:\n    dedup: {thresold: 0.9}\n")
                .find("job.yaml:6: 'data.prepare.dedup.thresold' is not a known key"),
            std::string::npos)
      << ErrorOf(d + "  prepare:\n    dedup: {thresold: 0.9}\n");
  EXPECT_NE(ErrorOf(d + "training: {language_weights: {es: -1}}\n")
                .find("'training.language_weights.es' must be a positive weight"),
            std::string::npos);
  EXPECT_NE(ErrorOf(d + "training: {language_weights: balanced}\n").find("must be none, inverse_frequency"),
            std::string::npos);
}

// A speed/memory knob: read, written back, validated, and not part of what a run computes
// (a checkpoint of a run without it resumes with it).
TEST(JobSpec, CheckpointKeepsProjectionsIsReadAndLeftOutOfTheRunIdentity) {
  const std::string base = "model: {path: /m}\nresources: {world_size: 1}\ndata: {train: /t}\n";
  auto off = ParseJobSpec(base, "job.yaml", "", SpecUse::kSubmission);
  auto on =
      ParseJobSpec(base + "training: {checkpoint_keeps_projections: true}\n", "job.yaml", "", SpecUse::kSubmission);
  ASSERT_TRUE(off.ok() && on.ok());
  EXPECT_FALSE(off->training.checkpoint_keeps_projections);
  EXPECT_TRUE(on->training.checkpoint_keeps_projections);
  auto again = ParseJobSpec(ToCanonicalYaml(*on), "canonical", "", SpecUse::kSubmission);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->training.checkpoint_keeps_projections);
  EXPECT_EQ(RunDefiningKeys(*off), RunDefiningKeys(*on));
  EXPECT_EQ(RunDefiningKeys(*on).count("training.checkpoint_keeps_projections"), 0u);
  EXPECT_NE(ErrorOf(base + "training: {checkpoint_keeps_projections: maybe}\n")
                .find("'training.checkpoint_keeps_projections' must be true or false"),
            std::string::npos)
      << ErrorOf(base + "training: {checkpoint_keeps_projections: maybe}\n");
}

// The compute dtype changes what a run computes: read, written back, validated, and part of
// the run identity (a bf16 checkpoint does not resume an fp32 run).
TEST(JobSpec, ComputeDtypeIsReadValidatedAndPartOfTheRunIdentity) {
  const std::string base = "model: {path: /m}\nresources: {world_size: 1}\ndata: {train: /t}\n";
  auto def = ParseJobSpec(base, "job.yaml", "", SpecUse::kSubmission);
  auto bf16 = ParseJobSpec(base + "training: {compute_dtype: bfloat16}\n", "job.yaml", "", SpecUse::kSubmission);
  ASSERT_TRUE(def.ok() && bf16.ok());
  EXPECT_EQ(def->training.compute_dtype, "auto");
  EXPECT_EQ(bf16->training.compute_dtype, "bfloat16");
  auto again = ParseJobSpec(ToCanonicalYaml(*bf16), "canonical", "", SpecUse::kSubmission);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->training.compute_dtype, "bfloat16");
  EXPECT_NE(RunDefiningKeys(*def), RunDefiningKeys(*bf16));
  EXPECT_EQ(RunDefiningKeys(*bf16).at("training.compute_dtype"), "bfloat16");
  const std::string err = ErrorOf(base + "training:\n  compute_dtype: fp16\n");
  EXPECT_NE(err.find("'training.compute_dtype' must be auto, float32 or bfloat16"), std::string::npos) << err;
  EXPECT_NE(err.find("job.yaml:5:"), std::string::npos) << err;
}

TEST(JobSpec, RefusesBadInputNamingTheKeyAndLine) {
  const std::string base = "model: {path: /m}\ndata: {train: /t}\nresources: {world_size: 1}\n";
  std::string err = ErrorOf(base + "training:\n  lr: 0.1\n  learning_rate: 2\n");
  EXPECT_NE(err.find("job.yaml:6: 'training.learning_rate' is not a known key"), std::string::npos) << err;
  EXPECT_NE(ErrorOf(base + "extra: 1\n").find("'extra' is not a known key"), std::string::npos);
  EXPECT_NE(ErrorOf(base + "training: {lr: .nan}\n").find("'training.lr' must be a finite number"), std::string::npos);
  EXPECT_NE(ErrorOf(base + "training: {micro_batch_size: 0}\n").find("'training.micro_batch_size' must be at least 1"),
            std::string::npos);
  EXPECT_NE(ErrorOf(base + "lora: {target_modules: [qkv]}\n").find("unknown module 'qkv'"), std::string::npos);
  EXPECT_NE(ErrorOf("model: {path: /m}\ndata: {train: /t}\n").find("'resources.world_size' is required"),
            std::string::npos);
  EXPECT_NE(ErrorOf("model: {path: /m}\ndata: {train: /t}\nresources: {world_size: 0}\n")
                .find("'resources.world_size' must be at least 1"),
            std::string::npos);
  EXPECT_NE(ErrorOf("model: {path: /m}\ndata: {train: /t}\nresources: {gpus: 2}\n")
                .find("'resources.gpus' is not a known key"),
            std::string::npos);
  EXPECT_NE(ErrorOf("model: {path: /m}\ndata: {train: {sha256: xyz}}\nresources: {world_size: 1}\n")
                .find("'data.train.sha256' must be 64 lower-case hex digits"),
            std::string::npos);
  EXPECT_NE(ErrorOf("model: [").find("invalid YAML"), std::string::npos);
  // Found by fuzzing: a mapping used as a key threw from yaml-cpp instead of being refused.
  EXPECT_NE(ErrorOf("model: {path: /m}\ndata: {train, {sha256: ab}: t.jsonl}\nresources: {world_size: 1}\n")
                .find("job.yaml:2: 'data' has a key that is not a plain name"),
            std::string::npos)
      << ErrorOf("model: {path: /m}\ndata: {train, {sha256: ab}: t.jsonl}\nresources: {world_size: 1}\n");
}

TEST(JobSpec, ARepeatedKeyIsRefusedNamingBothLines) {
  const std::string err = ErrorOf(
      "model: {path: /m}\ndata: {train: /t}\ntraining:\n  lr: 0.1\n  seed: 1\n  lr: 0.2\nresources: {world_size: 1}\n");
  EXPECT_NE(err.find("job.yaml:6: 'training.lr' is given twice (first at line 4)"), std::string::npos) << err;
  EXPECT_NE(ErrorOf("model: {path: /m}\ndata: {train: /t}\nresources: {world_size: 1}\nmodel: {path: /n}\n")
                .find("'model' is given twice (first at line 1)"),
            std::string::npos);
}

TEST(JobSpec, PathsAreAbsoluteWhereNoFolderResolvesThem) {
  const std::string rel = "model: {path: models/m}\ndata: {train: /t}\nresources: {world_size: 1}\n";
  EXPECT_NE(ErrorOf(rel).find("'model.path' must be an absolute path here"), std::string::npos);
  auto s = ParseJobSpec(rel, "job.yaml", "/jobs", SpecUse::kSubmission);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->model.path, "/jobs/models/m");
}

TEST(JobSpec, TrainingNeedsLocalDataAndAnOutputDirSubmissionDropsIt) {
  const std::string artifact =
      "model: {path: /m}\ndata: {train: {sha256: "
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}}\noutput_dir: /o\n";
  EXPECT_NE(ErrorOf(artifact, SpecUse::kTraining).find("only a worker can fetch those"), std::string::npos);
  EXPECT_NE(ErrorOf("model: {path: /m}\ndata: {train: /t}\n", SpecUse::kTraining).find("'output_dir' is required"),
            std::string::npos);
  auto s = ParseJobSpec("model: {path: /m}\ndata: {train: /t}\noutput_dir: /o\nresources: {world_size: 2}\n", "j", "",
                        SpecUse::kSubmission);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->output_dir.empty());
}

TEST(JobSpec, NameListsAgreeWithTheTextPipeline) {
  for (const auto& f : DataFormatNames()) EXPECT_TRUE(text::ParseDataFormat(f).ok()) << f;
  for (const auto& t : BuiltinChatTemplateNames()) EXPECT_TRUE(text::ChatTemplate::Builtin(t).ok()) << t;
  EXPECT_FALSE(text::ParseDataFormat("csv").ok());
}

}  // namespace
}  // namespace polytune::spec
